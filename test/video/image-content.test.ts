import t from 'tap';
import { imageSchema } from '../../src/profile/capture-schema.js';
import { laplacianVariance } from '../../src/video/focus.js';
import { VideoSource } from '../../src/video/video-source.js';
import { decodedLuma, lumaRange, probeVideo } from '../helpers/dicom-tools.js';
import { startClipHarness } from './clip-harness.js';
import { channelRange, decodeJpeg, nextEvent, silentLog, videoConfig, type RgbImage } from './helpers.js';

// Left half black, right half white, in limited range as capture cards deliver it.
const BLACK_WHITE = 'color=c=black:s=320x240:r=25,drawbox=x=160:y=0:w=160:h=240:color=white:t=fill,format=yuv420p,realtime';

// Keep the white right half, and black out a square inside it (source coordinates).
const IMAGE = { crop: { x: 160, y: 0, width: 160, height: 240 }, masks: [{ x: 200, y: 40, width: 80, height: 80 }], textRemovedByMasks: true };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('still is cropped and masked', async (t) => {
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: BLACK_WHITE } }), log: silentLog, image: imageSchema.parse(IMAGE) });
  t.teardown(() => source.stop());
  const acquired = nextEvent(source, 'signalAcquired', 10_000);
  await source.start();
  await acquired;

  const still = await source.captureStill(Date.now(), { jpegQuality: 95 });
  t.same([still.width, still.height], [160, 240], 'cropped size');
  const image = await decodeJpeg(still.jpeg);
  // The mask lands at 40..120 in the cropped picture; stay clear of its edges, where the DCT mixes.
  const masked = channelRange(image, 48, 48, 112, 112);
  const kept = channelRange(image, 8, 136, 152, 232);
  t.ok(masked.max <= 3, `masked area max ${masked.max} is black`);
  t.ok(kept.min >= 252, `unmasked area min ${kept.min} is white`);
});

t.test('clip is cropped and masked', async (t) => {
  const harness = await startClipHarness(t, { source: { kind: 'lavfi', url: BLACK_WHITE }, image: IMAGE });
  await harness.warmUp(0.5);
  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(500);
  harness.recorder.toggle(startedAt + 500);
  const [closed] = await harness.waitForClosed(1);
  const file = closed?.file.path ?? '';

  t.same([closed?.file.stream.width, closed?.file.stream.height], [160, 240], 'SPS has the cropped size');
  const probed = await probeVideo(file);
  t.same([probed.width, probed.height], [160, 240]);
  for (const frameIndex of [0, Math.max(0, probed.frames - 1)]) {
    const frame = await decodedLuma(file, frameIndex);
    const masked = lumaRange(frame, 48, 48, 112, 112);
    const kept = lumaRange(frame, 8, 136, 152, 232);
    // Limited range: black is 16 and white 235, give or take the encoder's error.
    t.ok(masked.max <= 24, `frame ${frameIndex}: masked area max ${masked.max} is black`);
    t.ok(kept.min >= 225, `frame ${frameIndex}: unmasked area min ${kept.min} is white`);
  }
});

/** Laplacian variance of a decoded JPEG's luma (BT.601 weights). */
function focusOf(image: RgbImage): number {
  const gray = new Uint8Array(image.width * image.height);
  for (let index = 0; index < gray.length; index += 1) {
    const r = image.pixels[index * 3] ?? 0;
    const g = image.pixels[index * 3 + 1] ?? 0;
    const b = image.pixels[index * 3 + 2] ?? 0;
    gray[index] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
  }
  return laplacianVariance(gray, image.width, image.height);
}

t.test('sharpest still beats the frame on screen', async (t) => {
  // Four frames in five are blurred: every fifth one (every 200 ms) is sharp.
  const url = "testsrc2=s=320x240:r=25,boxblur=luma_radius=6:chroma_radius=2:enable='not(eq(mod(n\\,5)\\,0))',realtime";
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url } }), log: silentLog, stillWindowMs: 300 });
  t.teardown(() => source.stop());
  const acquired = nextEvent(source, 'signalAcquired', 10_000);
  await source.start();
  await acquired;
  await sleep(500);

  const onScreen: number[] = [];
  for (let index = 0; index < 10; index += 1) {
    onScreen.push(focusOf(await decodeJpeg((await source.captureStill(Date.now(), { jpegQuality: 95 })).jpeg)));
    await sleep(37);
  }
  const low = Math.min(...onScreen);
  const high = Math.max(...onScreen);
  t.ok(low < high / 2, `frames on screen include blurred ones (focus ${Math.round(low)} to ${Math.round(high)})`);

  for (let index = 0; index < 3; index += 1) {
    const still = await source.captureStill(Date.now(), { jpegQuality: 95, selection: 'sharpest', windowMs: 300 });
    const focus = focusOf(await decodeJpeg(still.jpeg));
    t.ok(focus > (low + high) / 2, `sharpest still has focus ${Math.round(focus)}, above the middle of ${Math.round(low)} and ${Math.round(high)}`);
  }
});
