import t from 'tap';
import { Backoff } from '../src/backoff.js';

t.test('backoff grows and caps', async (t) => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 0, random: () => 0.5 });
  t.equal(backoff.next(), 100);
  t.equal(backoff.next(), 200);
  t.equal(backoff.next(), 400);
  t.equal(backoff.next(), 800);
  t.equal(backoff.next(), 1_000);
  t.equal(backoff.next(), 1_000);
});

t.test('backoff jitter stays within spread', async (t) => {
  const low = new Backoff({ initialMs: 1_000, maxMs: 10_000, jitter: 0.5, random: () => 0 });
  const high = new Backoff({ initialMs: 1_000, maxMs: 10_000, jitter: 0.5, random: () => 0.999999 });
  t.equal(low.next(), 500);
  t.equal(high.next(), 1_000);
});

t.test('backoff reset starts over', async (t) => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 0 });
  backoff.next();
  backoff.next();
  backoff.reset();
  t.equal(backoff.failures, 0);
  t.equal(backoff.next(), 100);
});
