import t from 'tap';
import type { GestureKind, GestureRecognized, PedalChange } from '../../src/footswitch/events.js';
import { GestureRecognizer, MIN_GESTURE_INTERVAL_MS } from '../../src/footswitch/gestures.js';
import type { PedalAction } from '../../src/profile/schema.js';
import { FakeTime } from './fake-time.js';

interface Recorded extends GestureRecognized {
  emittedAt: number;
}

interface Setup {
  debounceMs?: number;
  longPressMs?: number;
  doublePressMs?: number;
  gestures?: Partial<Record<GestureKind, PedalAction>>;
  leadingEdge?: boolean;
}

function setup(options: Setup = {}) {
  const time = new FakeTime();
  const gestures: Recorded[] = [];
  const changes: PedalChange[] = [];
  const recognizer = new GestureRecognizer({
    debounceMs: options.debounceMs ?? 30,
    longPressMs: options.longPressMs ?? 800,
    doublePressMs: options.doublePressMs ?? 350,
    gestures: { short: 'still', long: 'none', double: 'none', ...options.gestures },
    clock: time.clock,
    schedule: time.schedule,
    leadingEdge: options.leadingEdge ?? false,
    onPedalChanged: (change) => changes.push(change),
    onGesture: (gesture) => gestures.push({ ...gesture, emittedAt: time.now }),
  });
  /** Feeds a raw level and then lets `ms` pass. */
  const feed = (down: boolean, ms: number): void => {
    recognizer.input(down);
    time.advance(ms);
  };
  return { time, recognizer, gestures, changes, feed };
}

/** Feeds a contact that bounces for 15 ms, flipping three times before it settles. */
function bouncyEdge(feed: (down: boolean, ms: number) => void, down: boolean): void {
  feed(down, 3);
  feed(!down, 3);
  feed(down, 4);
  feed(!down, 5);
  feed(down, 0);
}

t.test('bounce of 15 ms is one press', async (t) => {
  const { time, gestures, changes, feed, recognizer } = setup();
  const start = time.now;
  bouncyEdge(feed, true);
  time.advance(200);
  bouncyEdge(feed, false);
  time.advance(200);

  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'short');
  t.equal(gestures[0]?.action, 'still');
  t.equal(gestures[0]?.pressedAt, start, 'pressedAt is the first raw edge');
  t.same(changes.map((change) => change.down), [true, false]);
  t.equal(changes[0]?.at, start);
  t.equal(recognizer.counters.rawEdges, 10);
  t.equal(time.pending, 0, 'no timer left behind');
});

t.test('short fires at debounced down edge without long or double', async (t) => {
  const { time, gestures, feed } = setup({ debounceMs: 30 });
  const start = time.now;
  feed(true, 29);
  t.equal(gestures.length, 0, 'not before the debounce time');
  time.advance(1);
  t.equal(gestures.length, 1, 'while the pedal is still down');
  t.equal(gestures[0]?.emittedAt, start + 30);
  feed(false, 500);
  t.equal(gestures.length, 1, 'release adds nothing');
});

t.test('glitch shorter than debounce is rejected', async (t) => {
  const { gestures, changes, feed, recognizer } = setup();
  feed(true, 10);
  feed(false, 100);
  t.equal(gestures.length, 0);
  t.equal(changes.length, 0);
  t.equal(recognizer.counters.bouncesRejected, 1);
});

t.test('long press fires at threshold while held', async (t) => {
  const { time, gestures, feed } = setup({ gestures: { long: 'still', short: 'none' }, longPressMs: 800 });
  const start = time.now;
  feed(true, 799);
  t.equal(gestures.length, 0);
  time.advance(1);
  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'long');
  t.equal(gestures[0]?.action, 'still');
  t.equal(gestures[0]?.pressedAt, start);
  t.equal(gestures[0]?.emittedAt, start + 800, 'measured from the first raw edge');
  time.advance(1_000);
  feed(false, 500);
  t.equal(gestures.length, 1, 'release after a long press adds nothing');
});

t.test('press shorter than long threshold is short at release', async (t) => {
  const { time, gestures, feed } = setup({ gestures: { long: 'still' } });
  const start = time.now;
  feed(true, 300);
  t.equal(gestures.length, 0, 'waits to know it is not long');
  feed(false, 30);
  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'short');
  t.equal(gestures[0]?.pressedAt, start);
  t.equal(gestures[0]?.emittedAt, start + 330, 'at the debounced release');
});

t.test('short press with long mapped to none ignores hold time', async (t) => {
  const { gestures, feed } = setup({ gestures: { long: 'none' } });
  feed(true, 5_000);
  feed(false, 100);
  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'short');
});

t.test('double press within window', async (t) => {
  const { time, gestures, feed } = setup({ gestures: { double: 'still', short: 'none' }, doublePressMs: 350 });
  const start = time.now;
  feed(true, 80);
  feed(false, 150);
  feed(true, 80);
  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'double');
  t.equal(gestures[0]?.action, 'still');
  t.equal(gestures[0]?.pressedAt, start, 'pressedAt is the first press');
  feed(false, 1_000);
  t.equal(gestures.length, 1, 'second release adds nothing');
});

t.test('single press waits for double window', async (t) => {
  const { time, gestures, feed } = setup({ gestures: { double: 'still' }, doublePressMs: 350 });
  const start = time.now;
  feed(true, 80);
  feed(false, 349);
  t.equal(gestures.length, 0, 'window still open');
  time.advance(1);
  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'short');
  t.equal(gestures[0]?.action, 'still');
  t.equal(gestures[0]?.pressedAt, start);
  t.equal(gestures[0]?.emittedAt, start + 80 + 350, 'window counts from the first raw edge of the release');
});

t.test('second press confirmed after window is still double', async (t) => {
  const { gestures, feed } = setup({ gestures: { double: 'still' }, doublePressMs: 350, debounceMs: 30 });
  feed(true, 80);
  feed(false, 340);
  // Starts 340 ms after the release; its debounce ends at 370 ms, past the window.
  feed(true, 100);
  t.equal(gestures.length, 1);
  t.equal(gestures[0]?.gesture, 'double');
});

t.test('second press after window is two shorts', async (t) => {
  const { gestures, feed } = setup({ gestures: { double: 'still' }, doublePressMs: 350 });
  feed(true, 80);
  feed(false, 400);
  feed(true, 80);
  feed(false, 400);
  t.same(
    gestures.map((gesture) => gesture.gesture),
    ['short', 'short'],
  );
});

t.test('bounce after window closes is short', async (t) => {
  const { gestures, feed } = setup({ gestures: { double: 'still' }, doublePressMs: 350, debounceMs: 30 });
  feed(true, 80);
  feed(false, 340);
  // A 10 ms glitch straddling the end of the window is not a second press.
  feed(true, 10);
  feed(false, 100);
  t.same(
    gestures.map((gesture) => gesture.gesture),
    ['short'],
  );
});

t.test('long press beats double window', async (t) => {
  const { gestures, feed } = setup({ gestures: { long: 'still', double: 'still' }, longPressMs: 800 });
  feed(true, 900);
  feed(false, 100);
  feed(true, 80);
  feed(false, 600);
  t.same(
    gestures.map((gesture) => gesture.gesture),
    ['long', 'short'],
  );
});

t.test('reset releases held pedal without action', async (t) => {
  const { time, gestures, changes, feed, recognizer } = setup({ gestures: { long: 'still' } });
  feed(true, 100);
  t.equal(recognizer.down, true);
  recognizer.reset();
  t.equal(recognizer.down, false);
  t.same(changes.map((change) => change.down), [true, false]);
  time.advance(2_000);
  t.equal(gestures.length, 0, 'neither short nor long fired');
  t.equal(time.pending, 0);
});

t.test('reset drops pending double window', async (t) => {
  const { time, gestures, feed, recognizer } = setup({ gestures: { double: 'still' } });
  feed(true, 80);
  feed(false, 100);
  recognizer.reset();
  time.advance(1_000);
  t.equal(gestures.length, 0);
});

t.test('flood of 10000 presses never settles', async (t) => {
  const { time, gestures, changes, recognizer } = setup({ debounceMs: 30 });
  // 10,000 presses in one second: an edge every 50 microseconds.
  for (let press = 0; press < 10_000; press += 1) {
    recognizer.input(true);
    time.advance(0.05);
    recognizer.input(false);
    time.advance(0.05);
  }
  time.advance(500);
  t.equal(recognizer.counters.rawEdges, 20_000);
  t.equal(gestures.length, 0, 'the line never settled down');
  t.equal(changes.length, 0);
  t.equal(time.pending, 0);
});

t.test('flood without debounce is rate limited', async (t) => {
  const { time, gestures, recognizer } = setup({ debounceMs: 0 });
  for (let press = 0; press < 10_000; press += 1) {
    recognizer.input(true);
    time.advance(0.05);
    recognizer.input(false);
    time.advance(0.05);
  }
  const limit = Math.ceil(1_000 / MIN_GESTURE_INTERVAL_MS) + 1;
  t.ok(gestures.length <= limit, `${gestures.length} gestures, limit ${limit}`);
  t.ok(gestures.length >= limit - 2, 'presses still pass at the limited rate');
  t.equal(recognizer.counters.gesturesEmitted + recognizer.counters.gesturesSuppressed, 10_000);
});

t.test('repeated level is not an edge', async (t) => {
  const { gestures, feed, recognizer } = setup();
  feed(true, 10);
  feed(true, 10);
  feed(true, 100);
  t.equal(recognizer.counters.rawEdges, 1);
  t.equal(gestures.length, 1);
});

t.test('leading edge emits at first byte', async (t) => {
  const { time, gestures, feed } = setup({ leadingEdge: true });
  const start = time.now;
  feed(true, 0);
  t.equal(gestures.length, 1, 'emitted before the debounce ends');
  t.equal(gestures[0]?.emittedAt, start);
  t.equal(gestures[0]?.pressedAt, start);
  time.advance(100);
  feed(false, 100);
  t.equal(gestures.length, 1, 'the debounced down edge emits nothing more');
});

t.test('leading edge merges bounce into one press', async (t) => {
  const { time, gestures, feed } = setup({ leadingEdge: true });
  bouncyEdge(feed, true);
  time.advance(200);
  bouncyEdge(feed, false);
  time.advance(200);
  t.equal(gestures.length, 1);
});

t.test('leading edge counts a quick tap', async (t) => {
  const { time, gestures, feed } = setup({ leadingEdge: true });
  feed(true, 10);
  feed(false, 200);
  t.equal(gestures.length, 1, 'a tap shorter than the debounce is still one press');
  time.advance(100);
  feed(true, 100);
  t.equal(gestures.length, 2, 'the next press counts');
});

t.test('leading edge off for long or double', async (t) => {
  const { gestures, feed } = setup({ leadingEdge: true, gestures: { double: 'still' } });
  feed(true, 10);
  t.equal(gestures.length, 0, 'with double presses recognised the press waits for its window');
});
