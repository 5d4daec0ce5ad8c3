import t from 'tap';
import { videoSourceSchema } from '../../src/profile/schema.js';
import { describeSource, inputSpec } from '../../src/video/input-spec.js';

const context = { fontFile: null, ioTimeoutMs: 2_000 };

t.test('v4l2 input carries size, rate and pixel format', async (t) => {
  const source = videoSourceSchema.parse({ kind: 'v4l2', url: '/dev/video2', width: 1920, height: 1080, frameRate: 60, inputFormat: 'yuyv422' });
  t.same(inputSpec(source, context), {
    url: '/dev/video2',
    format: 'v4l2',
    options: { video_size: '1920x1080', framerate: '60', input_format: 'yuyv422' },
  });
});

t.test('v4l2 input defaults to the first device', async (t) => {
  const source = videoSourceSchema.parse({ kind: 'v4l2' });
  t.same(inputSpec(source, context), { url: '/dev/video0', format: 'v4l2', options: {} });
});

t.test('network inputs get timeouts in microseconds', async (t) => {
  const udp = inputSpec(videoSourceSchema.parse({ kind: 'network', url: 'udp://127.0.0.1:5000', format: 'mpegts' }), context);
  t.same(udp.options, { rw_timeout: '2000000', timeout: '2000000', overrun_nonfatal: '1' });
  const rtsp = inputSpec(videoSourceSchema.parse({ kind: 'network', url: 'rtsp://127.0.0.1:8554/tower' }), context);
  t.same(rtsp.options, { rw_timeout: '2000000', timeout: '2000000' });
  const http = inputSpec(videoSourceSchema.parse({ kind: 'network', url: 'http://127.0.0.1:8080/stream.ts' }), context);
  t.same(http.options, { rw_timeout: '2000000' });
});

t.test('profile options override the defaults', async (t) => {
  const source = videoSourceSchema.parse({ kind: 'network', url: 'rtsp://127.0.0.1:8554/tower', options: { timeout: '5000000', rtsp_transport: 'tcp' } });
  t.same(inputSpec(source, context).options, { rw_timeout: '2000000', timeout: '5000000', rtsp_transport: 'tcp' });
});

t.test('lavfi and simulator inputs are lavfi graphs', async (t) => {
  const lavfi = inputSpec(videoSourceSchema.parse({ kind: 'lavfi', url: 'testsrc2=s=320x240' }), context);
  t.same(lavfi, { url: 'testsrc2=s=320x240', format: 'lavfi', options: {} });
  const simulator = inputSpec(videoSourceSchema.parse({ kind: 'simulator', width: 800, height: 600, frameRate: 50 }), context);
  t.equal(simulator.format, 'lavfi');
  t.match(simulator.url, /color=c=black:s=800x600:r=50/);
  t.notMatch(simulator.url, /drawtext/, 'no text panel without a font');
});

t.test('source description hides credentials and graphs', async (t) => {
  const rtsp = videoSourceSchema.parse({ kind: 'network', url: 'rtsp://operator:secret@127.0.0.1:8554/tower?token=abc' });
  t.same(describeSource(rtsp), { kind: 'network', url: 'rtsp://127.0.0.1:8554/tower' });
  const srt = videoSourceSchema.parse({ kind: 'network', url: 'srt://127.0.0.1:9000?passphrase=topsecret123' });
  t.notMatch(JSON.stringify(describeSource(srt)), /topsecret123/);
  t.same(describeSource(videoSourceSchema.parse({ kind: 'lavfi', url: 'testsrc2' })), { kind: 'lavfi' });
  t.same(describeSource(videoSourceSchema.parse({ kind: 'file', url: '/srv/tower.ts' })), { kind: 'file', url: '/srv/tower.ts' });
});
