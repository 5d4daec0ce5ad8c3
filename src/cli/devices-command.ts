import { execFile } from 'node:child_process';
import { readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SerialPort } from 'serialport';
import { errorMessage } from '../errors.js';
import { EXIT_CODES_HELP, parseCommand, usage } from './command-line.js';

const BY_ID = '/dev/serial/by-id';
const FORMATS_TIMEOUT_MS = 5_000;

const HELP = `Usage: endocap devices

Lists the video capture devices (/dev/video*) with their formats when
v4l2-ctl (package v4l-utils) can read them, and the serial ports with their
stable /dev/serial/by-id paths, for the profile's video.source and
footswitch.path. Needs no profile.

Options:
  --help               Print this help.

${EXIT_CODES_HELP}`;

export async function runDevicesCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('devices', HELP, () => parseArgs({ args: argv, options: { help: { type: 'boolean' } }, allowPositionals: true, strict: true }));
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length > 0) return usage('devices', `unexpected argument "${parsed.positionals[0]}"`, HELP);

  process.stdout.write('Video devices:\n');
  const videos = await videoDevices();
  if (videos.length === 0) process.stdout.write('  no video devices found\n');
  for (const device of videos) {
    process.stdout.write(`  ${device}\n`);
    for (const line of await videoFormats(device)) process.stdout.write(`    ${line}\n`);
  }

  process.stdout.write('Serial ports:\n');
  const byId = await serialLinks();
  const ports = await serialPorts(byId);
  if (ports.length === 0) process.stdout.write('  no serial ports found\n');
  for (const port of ports) {
    const details = [port.manufacturer, port.vendorId === undefined ? undefined : `${port.vendorId}:${port.productId ?? '?'}`, port.serialNumber === undefined ? undefined : `serial ${port.serialNumber}`];
    const described = details.filter((detail) => detail !== undefined).join(', ');
    process.stdout.write(`  ${port.path}${described === '' ? '' : `  (${described})`}\n`);
    for (const link of byId.get(port.path) ?? []) process.stdout.write(`    ${link}\n`);
  }
  return 0;
}

type PortInfo = Awaited<ReturnType<typeof SerialPort.list>>[number];

/**
 * serialport's list, which reads udev with udevadm. Without udevadm (a
 * container, a minimal image) it falls back to the USB-serial device nodes
 * and the by-id links, without vendor details.
 */
async function serialPorts(byId: Map<string, string[]>): Promise<PortInfo[]> {
  try {
    return await SerialPort.list();
  } catch (error) {
    process.stderr.write(`endocap devices: serial port details unavailable (${errorMessage(error)}); listing device nodes only\n`);
  }
  const names = (await readdir('/dev')).filter((name) => /^tty(USB|ACM)\d+$/.test(name)).map((name) => path.join('/dev', name));
  const paths = [...new Set([...names, ...byId.keys()])].sort();
  return paths.map((portPath) => ({ path: portPath, manufacturer: undefined, serialNumber: undefined, pnpId: undefined, locationId: undefined, productId: undefined, vendorId: undefined }));
}

async function videoDevices(): Promise<string[]> {
  const names = await readdir('/dev');
  return names
    .filter((name) => /^video\d+$/.test(name))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
    .map((name) => path.join('/dev', name));
}

/** Formats as v4l2-ctl prints them; a note instead when the tool is missing or the device cannot be read. */
function videoFormats(device: string): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('v4l2-ctl', ['--device', device, '--list-formats-ext'], { timeout: FORMATS_TIMEOUT_MS }, (error, stdout) => {
      if (error !== null) {
        const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
        resolve([missing ? 'formats unknown: install v4l-utils for v4l2-ctl' : `formats unreadable: ${error.message.split('\n')[0] ?? ''}`]);
        return;
      }
      resolve(stdout.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('[') || line.startsWith('Size')));
    });
  });
}

/** Device path to the /dev/serial/by-id links that point at it. */
async function serialLinks(): Promise<Map<string, string[]>> {
  const links = new Map<string, string[]>();
  let names: string[];
  try {
    names = await readdir(BY_ID);
  } catch (error) {
    // No USB-serial adapter has been plugged in since boot when udev has not made the folder.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return links;
    throw error;
  }
  for (const name of names) {
    const link = path.join(BY_ID, name);
    try {
      const target = await realpath(link);
      links.set(target, [...(links.get(target) ?? []), link]);
    } catch (error) {
      process.stderr.write(`endocap devices: ${link}: ${errorMessage(error)}\n`);
    }
  }
  return links;
}
