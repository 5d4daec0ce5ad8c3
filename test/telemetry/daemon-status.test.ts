import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startStorescp } from '../pacs/peers.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { freeUdpPort, killProcess, startFfmpeg } from '../video/helpers.js';
import { observe } from './helpers.js';
import { pressPedal, type StatusView } from './daemon-harness.js';

/** The change a dashboard must see within this time, in ms. */
const REPORT_WITHIN_MS = 2_000;

t.test('status reflects video signal loss and a PACS outage', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-status-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const dicomPort = await freePort();
  const received = path.join(directory, 'received');
  await import('node:fs/promises').then(({ mkdir }) => mkdir(received));
  let storescp = await startStorescp({ port: dicomPort, aeTitle: 'STORESCP', outputDirectory: received, args: ['+xa'] });
  t.teardown(() => storescp.stop());
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(() => pty.unplug());

  const videoPort = await freeUdpPort();
  const feederArgs = ['-re', '-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-c:v', 'mpeg2video', '-q:v', '5', '-f', 'mpegts', `udp://127.0.0.1:${videoPort}?pkt_size=1316`];
  let feeder = startFfmpeg(feederArgs);
  t.teardown(() => killProcess(feeder));

  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    mqttUrl: broker.url,
    // A slow heartbeat: every status seen below was published because something changed.
    mqtt: { statusIntervalMs: 60_000 },
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: dicomPort, calledAeTitle: 'STORESCP', retry: { initialMs: 200, maxMs: 1_000 } }],
    sections: {
      video: {
        source: { kind: 'network', url: `udp://127.0.0.1:${videoPort}`, format: 'mpegts' },
        ringFrames: 4,
        signalTimeoutMs: 500,
        reopen: { initialMs: 200, maxMs: 1_000, multiplier: 2 },
      },
    },
  });
  const observer = await observe(broker, 'endocap-test/test-box/status');
  t.teardown(() => observer.close());
  const latest = (): StatusView | undefined => {
    const last = observer.messages.at(-1);
    return last ? (JSON.parse(last.text) as StatusView) : undefined;
  };
  const statusAfter = async (since: number, check: (status: StatusView) => boolean, what: string): Promise<number> => {
    await observer.waitFor(() => latest() !== undefined && check(latest() as StatusView), what, 20_000);
    return Date.now() - since;
  };

  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await statusAfter(Date.now(), (status) => status.video.signal && status.alarms.length === 0, 'video signal and no alarm');

  // Video signal loss.
  const lostAt = Date.now();
  await killProcess(feeder);
  const lossDelay = await statusAfter(lostAt, (status) => !status.video.signal && status.alarms.includes('video-signal-lost'), 'status with the signal lost');
  t.ok(lossDelay <= REPORT_WITHIN_MS, `signal loss reported after ${lossDelay} ms`);
  feeder = startFfmpeg(feederArgs);
  await statusAfter(Date.now(), (status) => status.video.signal && !status.alarms.includes('video-signal-lost'), 'signal back and alarm cleared');
  t.pass('signal loss alarm cleared when the signal came back');

  // PACS outage: the box detects it at its next delivery attempt.
  await storescp.stop();
  const pressedAt = Date.now();
  await pressPedal(pty.testPath, 1);
  const outageDelay = await statusAfter(
    pressedAt,
    (status) => status.destinations.pacs?.linkUp === false && status.alarms.includes('destination-unreachable.pacs'),
    'status with the PACS unreachable',
  );
  t.ok(outageDelay <= REPORT_WITHIN_MS, `PACS outage reported ${outageDelay} ms after the capture`);
  t.equal(latest()?.destinations.pacs?.lastResult, 'transient');
  t.ok((latest()?.destinations.pacs?.queued ?? 0) >= 1, 'the still waits in the queue');

  storescp = await startStorescp({ port: dicomPort, aeTitle: 'STORESCP', outputDirectory: received, args: ['+xa'] });
  await statusAfter(
    Date.now(),
    (status) => status.destinations.pacs?.linkUp === true && status.destinations.pacs.queued === 0 && !status.alarms.includes('destination-unreachable.pacs'),
    'PACS back, queue empty and alarm cleared',
  );
  t.equal(latest()?.destinations.pacs?.lastResult, 'stored');
  t.equal(await daemon.stop(), 0);
});
