import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { StatusSampler } from '../../src/telemetry/status-sampler.js';

t.test('sampler reads the hottest thermal zone and the disk', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-sampler-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const thermal = path.join(directory, 'thermal');
  for (const [zone, milliCelsius] of [['thermal_zone0', '41000'], ['thermal_zone1', '57500'], ['cooling_device0', '99000']]) {
    await mkdir(path.join(thermal, zone ?? ''), { recursive: true });
    await writeFile(path.join(thermal, zone ?? '', 'temp'), `${milliCelsius}\n`);
  }
  await mkdir(path.join(thermal, 'thermal_zone2'));
  const sampler = new StatusSampler({ diskPath: directory, thermalDirectory: thermal });
  sampler.start();
  t.teardown(() => sampler.stop());
  await new Promise((resolve) => setTimeout(resolve, 100));
  const sample = await sampler.sample();
  t.equal(sample.temperatureCelsius, 57.5, 'hottest zone, a zone without a sensor skipped, cooling devices ignored');
  t.ok((sample.diskFreeBytes ?? 0) > 0, 'free space of the folder\'s filesystem');
  t.ok(sample.cpuPercent >= 0 && sample.cpuPercent <= 100);
  t.ok(sample.memoryAvailableBytes <= sample.memoryTotalBytes);

  const none = new StatusSampler({ diskPath: path.join(directory, 'absent'), thermalDirectory: path.join(directory, 'no-thermal') });
  const empty = await none.sample();
  t.equal(empty.temperatureCelsius, null, 'no thermal zones: temperature unknown');
  t.equal(empty.diskFreeBytes, null, 'missing folder: free space unknown');
});
