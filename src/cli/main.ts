#!/usr/bin/env node
import './threadpool.js';
import { SOFTWARE_VERSION } from '../version.js';

const USAGE = `Usage: endocap <command> [options]

Commands:
  run --profile FILE          Run the capture daemon with a hardware profile.
  demo [--captures N] [--clips N]
                              Run the whole chain on embedded defaults: simulated
                              video, keyboard pedal (space = still), an in-process
                              DICOM receiver and MQTT broker on 127.0.0.1.
  profile check FILE          Validate a profile; lists every problem, exit 78 if any.
  profile migrate FILE [--write]
                              Rewrite a profile in the current format version.
  profile schema              Print the profile's JSON Schema.
  profile docs [--write FILE] Print the field reference of profiles.
  queue list|retry|export|import
                              List, retry, export or import spooled objects.
  exam start|end|status       Select the procedure of the exam, end it, show it.
  worklist refresh|list       Query the worklist now, list its procedures.
  status [--json]             Show the running daemon's status.
  echo                        Check every destination and the worklist server
                              (C-ECHO, or QIDO-RS for STOW-RS destinations).
  conformance [--format markdown|json]
                              Print the DICOM Conformance Statement of the profile.
  video test [--seconds N] [--snapshot FILE]
                              Open the video source, report format and frame rate.
  footswitch test [--seconds N]
                              Print pedal changes and gestures as they happen.
  devices                     List video devices and serial ports.
  version                     Print the version.

Exit codes: 0 success, 1 runtime failure, 64 usage error, 78 invalid profile.
Run 'endocap <command> --help' for the options of one command.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    // Commands are loaded on demand so that `profile check` does not load FFmpeg or serial bindings.
    case 'run':
      return (await import('./run-command.js')).runDaemonCommand(rest);
    case 'demo':
      return (await import('./demo-command.js')).runDemoCommand(rest);
    case 'profile':
      return (await import('./profile-command.js')).runProfileCommand(rest);
    case 'queue':
      return (await import('./queue-command.js')).runQueueCommand(rest);
    case 'exam':
      return (await import('./exam-command.js')).runExamCommand(rest);
    case 'worklist':
      return (await import('./worklist-command.js')).runWorklistCommand(rest);
    case 'status':
      return (await import('./status-command.js')).runStatusCommand(rest);
    case 'echo':
      return (await import('./echo-command.js')).runEchoCommand(rest);
    case 'conformance':
      return (await import('./conformance-command.js')).runConformanceCommand(rest);
    case 'video':
      return (await import('./video-command.js')).runVideoCommand(rest);
    case 'footswitch':
      return (await import('./footswitch-command.js')).runFootswitchCommand(rest);
    case 'devices':
      return (await import('./devices-command.js')).runDevicesCommand(rest);
    case 'version':
    case '--version':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write('Usage: endocap version\n\nPrints the version of endocap and exits.\n');
        return 0;
      }
      process.stdout.write(`${SOFTWARE_VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 64 : 0;
    default:
      process.stderr.write(`endocap: unknown command "${command}"\n\n${USAGE}\n`);
      return 64;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`endocap: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
