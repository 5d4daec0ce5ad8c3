import t from 'tap';
import { DEFAULT_SIMULATOR_FONT, findSimulatorFont, simulatorGraph } from '../../src/video/simulator.js';
import { VideoSource } from '../../src/video/video-source.js';
import { channelRange, decodeJpeg, nextEvent, silentLog, videoConfig, type RgbImage } from './helpers.js';

/** Share of pixels in a rectangle whose brightest channel exceeds `threshold`. */
function brightShare(image: RgbImage, x0: number, y0: number, x1: number, y1: number, threshold: number): number {
  let bright = 0;
  for (let y = y0; y < y1; y += 1) {
    for (let x = x0; x < x1; x += 1) {
      const offset = (y * image.width + x) * 3;
      const max = Math.max(image.pixels[offset] ?? 0, image.pixels[offset + 1] ?? 0, image.pixels[offset + 2] ?? 0);
      if (max > threshold) bright += 1;
    }
  }
  return bright / ((x1 - x0) * (y1 - y0));
}

t.test('simulator graph paces itself and draws a fake panel', async (t) => {
  const graph = simulatorGraph({ width: 1920, height: 1080, frameRate: 30 });
  t.match(graph, /,realtime$/, 'ends in realtime');
  t.match(graph, /drawtext=fontfile=\/usr\/share\/fonts\/truetype\/dejavu\/DejaVuSans\.ttf:/, 'uses the default font');
  t.match(graph, /DOE\^JANE/, 'shows the made-up patient name');
  t.match(graph, /SIMULATOR/, 'labels itself as simulated');
  t.match(graph, /localtime/, 'shows the clock');
  t.match(graph, /s=1920x1080:r=30/, 'background has the requested size and rate');
});

t.test('simulator graph without font has no text panel', async (t) => {
  const graph = simulatorGraph({ width: 640, height: 480, frameRate: 25, fontFile: null });
  t.notMatch(graph, /drawtext/);
  t.match(graph, /,realtime$/);
});

t.test('simulator font lookup skips missing files', async (t) => {
  t.equal(await findSimulatorFont(['/nonexistent/endocap/font.ttf']), undefined);
  t.equal(await findSimulatorFont(['/nonexistent/endocap/font.ttf', DEFAULT_SIMULATOR_FONT]), DEFAULT_SIMULATOR_FONT, 'fonts-dejavu-core is installed');
});

t.test('simulator looks like a tower output', async (t) => {
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'simulator', width: 640, height: 360, frameRate: 25 } }),
    log: silentLog,
  });
  t.teardown(() => source.stop());
  const acquired = nextEvent(source, 'signalAcquired', 15_000);
  await source.start();
  t.same(await acquired, { width: 640, height: 360, pixelFormat: 'yuv420p', frameRate: 25 });

  const image = await decodeJpeg((await source.captureStill(Date.now(), { jpegQuality: 90 })).jpeg);
  t.equal(image.width, 640);
  t.equal(image.height, 360);

  // Layout at 640x360: circle of diameter 336 at x 292..628, text panel from x 13.
  t.ok(channelRange(image, 0, 0, 8, 8).max <= 12, 'top-left corner is black');
  t.ok(channelRange(image, 632, 352, 640, 360).max <= 12, 'bottom-right corner is black');
  t.ok(channelRange(image, 280, 0, 290, 8).max <= 12, 'outside the circle next to its top is black');
  const scope = channelRange(image, 420, 140, 500, 220);
  t.ok(scope.max > 60, `centre of the circle has image content (max ${scope.max})`);
  t.ok(scope.max - scope.min > 10, `centre of the circle is textured (range ${scope.min}..${scope.max})`);
  const panelText = brightShare(image, 10, 20, 200, 200, 180);
  t.ok(panelText > 0.01 && panelText < 0.5, `text panel has white glyphs on black (${(panelText * 100).toFixed(1)} % bright)`);
});
