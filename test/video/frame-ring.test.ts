import t from 'tap';
import '../../src/video/polyfill.js';
import { Frame } from 'node-av/lib';
import { FrameRing } from '../../src/video/frame-ring.js';

function frameWithPts(pts: number): Frame {
  const frame = new Frame();
  frame.alloc();
  frame.width = 16;
  frame.height = 16;
  frame.pts = BigInt(pts);
  return frame;
}

t.test('frame ring keeps the newest frames and frees evicted ones', async (t) => {
  const ring = new FrameRing(3);
  const frames = [1, 2, 3, 4, 5].map(frameWithPts);
  frames.forEach((frame, index) => ring.push(frame, 1_000 + index * 100));
  t.teardown(() => ring.clear());

  t.equal(ring.size, 3);
  t.equal(ring.newest()?.pts, 5n);
  t.equal(frames[0]?.width, 0, 'first evicted frame is freed');
  t.equal(frames[1]?.width, 0, 'second evicted frame is freed');
  t.equal(frames[2]?.width, 16, 'kept frame is intact');
});

t.test('frame ring picks the frame on screen at a time', async (t) => {
  const ring = new FrameRing(4);
  t.teardown(() => ring.clear());
  t.equal(ring.frameAt(5_000), undefined, 'empty ring has no frame');

  // Frames arrive at 1000, 1100, 1200 and 1300 ms.
  [10, 11, 12, 13].forEach((pts, index) => ring.push(frameWithPts(pts), 1_000 + index * 100));
  t.equal(ring.frameAt(1_250)?.pts, 12n, 'newest frame that arrived before the time');
  t.equal(ring.frameAt(1_200)?.pts, 12n, 'a frame that arrived exactly then counts');
  t.equal(ring.frameAt(9_999)?.pts, 13n, 'a later time gives the newest frame');
  t.equal(ring.frameAt(500)?.pts, 10n, 'an earlier time gives the oldest kept frame');
  t.equal(ring.frameAt(1_000)?.arrivedAt, 1_000);
});

t.test('frame ring clear frees every frame', async (t) => {
  const ring = new FrameRing(2);
  const frames = [1, 2].map(frameWithPts);
  frames.forEach((frame, index) => ring.push(frame, index));
  ring.clear();
  t.equal(ring.size, 0);
  t.same(frames.map((frame) => frame.width), [0, 0]);
});

t.test('frame ring rejects a capacity below one', async (t) => {
  t.throws(() => new FrameRing(0), RangeError);
  t.throws(() => new FrameRing(1.5), RangeError);
});
