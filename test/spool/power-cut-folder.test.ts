/**
 * Power cut after the first add into a spool folder that Spool.open() made.
 * POSIX makes a new folder's entry in its parent durable only at an fsync of
 * the parent. The profiles put the spool at /var/lib/endocap/spool, where
 * systemd makes /var/lib/endocap (StateDirectory) and the spool makes `spool`
 * at its first start. Without that fsync, a power cut could take the whole
 * spool folder, with objects whose add() had resolved. ext4 usually commits
 * the mkdir with the first fsync, so the loss needs a filesystem without that
 * ordering, as the power-cut filesystem here is.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { syncDirectory } from '../../src/spool/durable-file.js';
import { testWithPowerCutFs } from '../helpers/powercut-fs.js';
import { freePort } from '../helpers/ports.js';
import { UID_ROOT } from './fixtures/objects.js';
import { runPowerCutChild, spooledObjects } from './fixtures/power-cut-run.js';

await testWithPowerCutFs(t, 'spool folder made by open survives a power cut', async (t, fs) => {
  // The parent exists and is synced, as the service's state folder is. Spool.open() makes the spool folder inside it.
  const state = path.join(fs.mountpoint, 'state');
  await mkdir(state);
  await syncDirectory(fs.mountpoint);
  const spoolDirectory = path.join(state, 'spool');
  // Nothing listens on this loopback port, so the object stays in the spool.
  const port = await freePort();
  const result = await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.82`, 1, (round) => round.added.size === 1);
  await fs.cut();

  const spooled = await spooledObjects(path.join(spoolDirectory, 'objects'));
  t.same([...spooled.ids.keys()], [...result.added.keys()], 'the added object is still in the spool');
});

await testWithPowerCutFs(t, 'spool folder left by a killed open survives a power cut', async (t, fs) => {
  const state = path.join(fs.mountpoint, 'state');
  await mkdir(state);
  await syncDirectory(fs.mountpoint);
  // An earlier open made the spool folder and was killed before it flushed the folder's entry in `state`.
  const spoolDirectory = path.join(state, 'spool');
  await mkdir(spoolDirectory);
  const port = await freePort();
  const result = await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.83`, 1, (round) => round.added.size === 1);
  await fs.cut();

  const spooled = await spooledObjects(path.join(spoolDirectory, 'objects'));
  t.same([...spooled.ids.keys()], [...result.added.keys()], 'the added object is still in the spool');
});

await testWithPowerCutFs(t, 'state folder made by another program survives a power cut', async (t, fs) => {
  // systemd makes the StateDirectory at the first start, and the daemon cannot know whether that entry was flushed.
  const state = path.join(fs.mountpoint, 'state');
  await mkdir(state);
  const spoolDirectory = path.join(state, 'spool');
  const port = await freePort();
  const result = await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.84`, 1, (round) => round.added.size === 1);
  await fs.cut();

  const spooled = await spooledObjects(path.join(spoolDirectory, 'objects'));
  t.same([...spooled.ids.keys()], [...result.added.keys()], 'the added object is still in the spool');
});
