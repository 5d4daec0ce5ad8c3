import t from 'tap';
import { ErrorCodes, EndocapError } from '../../src/errors.js';
import { qscaleFor } from '../../src/video/still-encoder.js';
import { VideoSource } from '../../src/video/video-source.js';
import { channelRange, decodeJpeg, jpegFrameHeader, nextEvent, silentLog, videoConfig, waitFor } from './helpers.js';

// Left half black, right half white, in limited (TV) range: Y is 16 and 235.
const HALF_BLACK_HALF_WHITE = 'color=c=black:s=320x240:r=30,drawbox=x=160:y=0:w=160:h=240:color=white:t=fill,format=yuv420p,realtime';

t.test('still of limited-range black and white is full range', async (t) => {
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: HALF_BLACK_HALF_WHITE } }), log: silentLog });
  t.teardown(() => source.stop());
  const acquired = nextEvent(source, 'signalAcquired', 10_000);
  await source.start();
  await acquired;

  const still = await source.captureStill(Date.now(), { jpegQuality: 95 });
  t.equal(still.width, 320);
  t.equal(still.height, 240);

  const image = await decodeJpeg(still.jpeg);
  t.equal(image.width, 320);
  t.equal(image.height, 240);
  // Stay clear of the edge, where chroma subsampling and the DCT mix both sides.
  const black = channelRange(image, 8, 8, 144, 232);
  const white = channelRange(image, 176, 8, 312, 232);
  t.ok(black.max <= 3, `black area max ${black.max} is at most 3`);
  t.ok(white.min >= 252, `white area min ${white.min} is at least 252`);
});

t.test('still is baseline JPEG with 4:2:2 sampling', async (t) => {
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: HALF_BLACK_HALF_WHITE } }), log: silentLog });
  t.teardown(() => source.stop());
  const acquired = nextEvent(source, 'signalAcquired', 10_000);
  await source.start();
  await acquired;

  const still = await source.captureStill(Date.now(), { jpegQuality: 90 });
  t.equal(still.jpeg[0], 0xff);
  t.equal(still.jpeg[1], 0xd8, 'starts with SOI');
  const header = jpegFrameHeader(still.jpeg);
  t.equal(header.marker, 0xc0, 'SOF0, baseline DCT');
  t.equal(header.width, 320);
  t.equal(header.height, 240);
  t.equal(header.sampling.length, 3);
  const [luma, blue, red] = header.sampling;
  // 4:2:2 is chroma at half the horizontal and the full vertical luma resolution.
  t.equal((luma?.h ?? 0) / (blue?.h ?? 1), 2, 'Cb horizontally halved');
  t.equal((luma?.v ?? 0) / (blue?.v ?? 1), 1, 'Cb vertically full');
  t.same(red, blue, 'Cr sampled like Cb');
});

t.test('still quality changes the JPEG size', async (t) => {
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: 'testsrc2=s=320x240:r=30,realtime' } }), log: silentLog });
  t.teardown(() => source.stop());
  const acquired = nextEvent(source, 'signalAcquired', 10_000);
  await source.start();
  await acquired;

  const at = Date.now();
  const low = await source.captureStill(at, { jpegQuality: 50 });
  const high = await source.captureStill(at, { jpegQuality: 98 });
  t.equal(low.frameTime.getTime(), high.frameTime.getTime(), 'same frame both times');
  t.ok(high.jpeg.length > low.jpeg.length * 1.5, `quality 98 (${high.jpeg.length} bytes) is much larger than quality 50 (${low.jpeg.length} bytes)`);
});

t.test('still picks the frame on screen at the requested time', async (t) => {
  // Luma steps by 20 per frame at 10 frames per second, so each frame differs.
  const graph = "color=c=black:s=64x48:r=10,format=gray,geq=lum='mod(N*20\\,200)+20',format=yuv420p,realtime";
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: graph }, ringFrames: 8 }), log: silentLog });
  t.teardown(() => source.stop());
  await source.start();
  await waitFor(() => source.status().framesDecoded >= 12, 10_000, '12 decoded frames');

  const now = Date.now();
  const newest = await source.captureStill(now, { jpegQuality: 90 });
  t.ok(newest.frameTime.getTime() <= now, 'newest frame arrived before the request');

  const earlier = now - 350;
  const past = await source.captureStill(earlier, { jpegQuality: 90 });
  t.ok(past.frameTime.getTime() <= earlier, 'picked frame arrived at or before the requested time');
  t.ok(past.frameTime.getTime() > earlier - 400, 'picked frame is the one on screen then, not an older one');
  const newestImage = await decodeJpeg(newest.jpeg);
  const pastImage = await decodeJpeg(past.jpeg);
  t.not(channelRange(pastImage, 8, 8, 56, 40).min, channelRange(newestImage, 8, 8, 56, 40).min, 'the two stills show different frames');

  const ancient = await source.captureStill(now - 60_000, { jpegQuality: 90 });
  t.ok(ancient.frameTime.getTime() > now - 60_000, 'a time older than every kept frame gives the oldest kept frame');
  t.ok(ancient.frameTime.getTime() <= past.frameTime.getTime(), 'the oldest kept frame is not newer than the picked one');
});

t.test('still without frames is a retryable VIDEO_NO_FRAME', async (t) => {
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: HALF_BLACK_HALF_WHITE } }), log: silentLog });
  const error = await source.captureStill(Date.now(), { jpegQuality: 90 }).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  t.ok(error instanceof EndocapError, 'throws EndocapError');
  t.equal((error as EndocapError).code, ErrorCodes.VIDEO_NO_FRAME);
  t.equal((error as EndocapError).retryable, true);
});

t.test('jpeg quality maps to a decreasing qscale', async (t) => {
  t.equal(qscaleFor(100), 1);
  t.equal(qscaleFor(90), 3);
  t.equal(qscaleFor(75), 7);
  t.equal(qscaleFor(50), 14);
  t.equal(qscaleFor(1), 31);
  let previous = Infinity;
  for (let quality = 1; quality <= 100; quality += 1) {
    const qscale = qscaleFor(quality);
    t.ok(qscale <= previous, `qscale for quality ${quality} does not increase`);
    previous = qscale;
  }
});
