import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { ClipPipelineEvents } from '../../src/daemon/clip-pipeline.js';
import { registerExamCommands } from '../../src/daemon/exam-commands.js';
import { finishRecordingClip } from '../../src/daemon/exam-workflow.js';
import { ErrorCodes } from '../../src/errors.js';
import { parseProfile, ProfileError } from '../../src/profile/load-profile.js';
import { CommandRegistry } from '../../src/telemetry/commands.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { entry, FixedWorklist, removeDirectory, startExamHarness } from './exam-fixtures.js';
import { memoryLogger } from './fixtures.js';

const root = path.resolve(import.meta.dirname, '../..');

t.test('exam remote commands', async (t) => {
  const { log } = memoryLogger();
  const harness = await startExamHarness({ worklist: new FixedWorklist([entry('ACC1')]), log });
  t.teardown(async () => {
    await harness.close();
    await removeDirectory(harness.directory);
  });
  const registry = new CommandRegistry();
  registerExamCommands(registry, harness.manager);

  const invalid = await registry.run('select-procedure', { accessionNumber: '', extra: 'PID-SECRET-1' });
  t.match(invalid, { ok: false, error: { code: ErrorCodes.COMMAND_INVALID } });
  t.notMatch(JSON.stringify(invalid), /PID-SECRET-1/, 'the rejected arguments are not repeated');
  t.match(await registry.run('select-procedure', { accessionNumber: 'ACC-NONE' }), { ok: false, error: { code: ErrorCodes.EXAM_NO_MATCH } });
  const selected = await registry.run('select-procedure', { accessionNumber: 'ACC1' });
  t.match(selected, { ok: true, result: { alreadyOpen: false } });
  t.notMatch(JSON.stringify(selected), /ACC1|Test\^Patient/, 'the result carries no patient data');
  t.match(await registry.run('end-exam', { reason: 'no-such-reason' }), { ok: false, error: { code: ErrorCodes.COMMAND_INVALID } });
  t.match(await registry.run('end-exam', { discontinue: true, reason: 'patient-refused' }), { ok: true, result: { outcome: 'discontinued', objects: 0 } });
  t.match(await registry.run('end-exam', {}), { ok: false, error: { code: ErrorCodes.EXAM_NOT_OPEN, message: 'no exam is open' } });
});

t.test('an exam end finishes the clip being recorded', async (t) => {
  class FakeClips extends EventEmitter<ClipPipelineEvents> {
    recording = true;
    toggles = 0;
    toggle(): void {
      this.toggles += 1;
      this.recording = false;
      setTimeout(() => this.emit('clipCaptured', { clipId: 'c1', part: 1, objectId: 'o1', bytes: 1, frames: 1 }), 50);
    }
  }
  const clips = new FakeClips();
  const started = Date.now();
  await finishRecordingClip(clips, 5_000);
  t.equal(clips.toggles, 1, 'the recording was stopped');
  t.ok(Date.now() - started >= 40, 'waited for the clip to be stored');
  t.equal(clips.listenerCount('clipCaptured'), 0, 'no listener left behind');
  await finishRecordingClip(clips, 5_000);
  t.equal(clips.toggles, 1, 'nothing to do without a recording');
});

t.test('profile needs a worklist for the barcode reader', async (t) => {
  const base = ['formatVersion: 1', 'station: { aeTitle: A, stationName: S, uidRoot: 1.2.3 }', 'video: { source: { kind: simulator } }', 'footswitch: { kind: none }', 'spool: { directory: /tmp/s }', 'stateDirectory: /tmp/t'];
  const error = (() => {
    try {
      parseProfile([...base, 'exam: { barcode: { path: /dev/ttyUSB1 }, autoSelect: { enabled: true } }'].join('\n'), 'p.yaml');
    } catch (caught) {
      return caught;
    }
    return undefined;
  })();
  t.type(error, ProfileError);
  t.match((error as ProfileError).message, 'p.yaml: worklist: expected a worklist section (host, port, calledAeTitle) or an hl7 section (host, port), because exam.barcode selects procedures from one of them, got nothing');
  t.match((error as ProfileError).message, 'because exam.autoSelect selects procedures from one of them');
  const profile = parseProfile([...base, 'worklist: { host: 127.0.0.1, port: 104, calledAeTitle: WL }', 'mpps: { host: 127.0.0.1, port: 105, calledAeTitle: MPPS }', 'exam: { barcode: { path: /dev/ttyUSB1 } }'].join('\n'), 'p.yaml');
  t.equal(profile.worklist?.modality, 'ES');
  t.equal(profile.exam.idleEndMinutes, 120);
  t.same(profile.exam.barcode?.matches, ['accession-number', 'patient-id']);
});

t.test('exam command usage errors', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-cli-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const profile = await writeTestProfile({ directory, sections: { worklist: { host: '127.0.0.1', port: 104, calledAeTitle: 'WL' } } });
  const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args], (error, stdout, stderr) => {
        let code = 0;
        if (error !== null) code = typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      });
    });
  t.match(await cli('exam', 'start', '--profile', profile), { code: 64, stderr: /give exactly one of --accession and --patient-id/ });
  t.match(await cli('exam', 'end', '--reason', 'bored', '--profile', profile), { code: 64, stderr: /--reason must be one of unspecified, wrong-worklist-entry/ });
  t.match(await cli('exam', 'start', '--accession', 'ACC1', '--profile', profile), { code: 1, stderr: /the daemon is not running: nothing listens on .*control\.sock/ });
  t.match(await cli('worklist', 'list', '--profile', profile), { code: 1, stderr: /the daemon is not running and there is no worklist cache/ });
  await writeFile(path.join(directory, 'bad.yaml'), 'formatVersion: 2\n');
  t.match(await cli('exam', 'status', '--profile', path.join(directory, 'bad.yaml')), { code: 78 });
  t.match(await cli('exam', '--help'), { code: 0, stdout: /Usage: endocap exam start/ });
});
