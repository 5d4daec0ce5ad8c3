import t from 'tap';
import { MAX_UID_ROOT_LENGTH, createUidGenerator, isValidUid } from '../../src/dicom/uid.js';
import { UID_ROOT } from './fixtures/dicom.js';

t.test('isValidUid accepts and rejects', async (t) => {
  const valid = ['1.2.840.10008.1.2.4.50', '0.0', '2.25.174283778762569116591965454655699947168', '1.2.3.0.4', '1'];
  const invalid = ['', '1.02', '1..2', '.1.2', '1.2.', '1.2.a', '1,2', '1.2 ', '1.2.3\u0000', '1.' + '2'.repeat(63)];
  for (const uid of valid) t.ok(isValidUid(uid), `valid: ${JSON.stringify(uid)}`);
  for (const uid of invalid) t.notOk(isValidUid(uid), `invalid: ${JSON.stringify(uid)}`);
  t.ok(isValidUid('1.' + '2'.repeat(62)), '64 characters is the maximum');
});

t.test('uid generator makes 100k unique valid uids', async (t) => {
  const next = createUidGenerator(UID_ROOT);
  const seen = new Set<string>();
  let invalid = 0;
  for (let i = 0; i < 100_000; i += 1) {
    const uid = next();
    if (!isValidUid(uid) || !uid.startsWith(`${UID_ROOT}.`)) invalid += 1;
    seen.add(uid);
  }
  t.equal(invalid, 0, 'every UID valid and under the root');
  t.equal(seen.size, 100_000, 'no repeats');
});

t.test('uid generator fits a 40-character root in 64', async (t) => {
  const root = '1.2.826.0.1.3680043.10.999.1234567.12345';
  t.equal(root.length, MAX_UID_ROOT_LENGTH);
  const next = createUidGenerator(root);
  for (let i = 0; i < 1_000; i += 1) {
    const uid = next();
    t.ok(uid.length <= 64 && isValidUid(uid), `${uid} is valid`);
    if (!isValidUid(uid)) break;
  }
});

t.test('uid generator stays unique when the clock stops or goes back', async (t) => {
  let clock = 1_800_000_000_000;
  const next = createUidGenerator(UID_ROOT, { now: () => clock, randomInt: () => 0 });
  const seen = new Set<string>();
  for (let i = 0; i < 1_000; i += 1) seen.add(next());
  clock -= 60_000;
  for (let i = 0; i < 1_000; i += 1) seen.add(next());
  t.equal(seen.size, 2_000);
  t.equal(next(), `${UID_ROOT}.1800000000000.2000`, 'time stays at the last value and the counter goes on');
});

t.test('uid generator counter wraps into the next millisecond', async (t) => {
  const root = '1.2.826.0.1.3680043.10.999.1234567.12345';
  const next = createUidGenerator(root, { now: () => 1_800_000_000_000, randomInt: (max) => max - 2 });
  t.equal(next(), `${root}.1800000000000.999999998`);
  t.equal(next(), `${root}.1800000000000.999999999`);
  t.equal(next(), `${root}.1800000000000.0`, 'the random start plus the counter wraps modulo 10^9');
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i += 1) seen.add(next());
  t.equal(seen.size, 10_000);
});

t.test('two generators differ in the same millisecond', async (t) => {
  const clock = (): number => 1_800_000_000_000;
  const first = createUidGenerator(UID_ROOT, { now: clock });
  const second = createUidGenerator(UID_ROOT, { now: clock });
  const a = new Set(Array.from({ length: 100 }, () => first()));
  const b = Array.from({ length: 100 }, () => second());
  t.equal(b.filter((uid) => a.has(uid)).length, 0, 'random starts keep them apart');
});

t.test('uid generator rejects a bad root', async (t) => {
  t.throws(() => createUidGenerator('1.02.3'), { code: 'PROFILE_INVALID' });
  t.throws(() => createUidGenerator('1.2.826.0.1.3680043.10.999.1234567.123456'), {
    code: 'PROFILE_INVALID',
    message: /at most 40 characters/,
  });
});
