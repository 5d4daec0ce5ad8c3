import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { barcodeSchema } from '../../src/profile/schema.js';
import { BarcodeScanner, checkCode, CodeLineDecoder } from '../../src/worklist/barcode-scanner.js';
import { waitFor } from '../helpers/ports.js';
import { startPtyPair } from '../helpers/socat.js';
import { memoryLogger } from './fixtures.js';

t.test('line decoder splits and bounds lines', async (t) => {
  const decoder = new CodeLineDecoder(8);
  t.same(decoder.decode(Buffer.from('AB')), [], 'a partial line waits');
  t.same(decoder.decode(Buffer.from('C\r\n\r\nDEF\n')).map(String), ['ABC', 'DEF'], 'CRLF, blank lines and LF');
  t.same(decoder.decode(Buffer.from('0123456789')), [], 'an overlong line is dropped as it grows');
  t.same(decoder.decode(Buffer.from('XYZ\rOK\r')), ['too-long', Buffer.from('OK')], 'reported once at its end');
});

t.test('noise checks', async (t) => {
  t.same(checkCode(Buffer.from('  ACC123 '), 3), { value: 'ACC123' });
  t.same(checkCode(Buffer.from('A\x07B12'), 3), { reason: 'control-characters' });
  t.same(checkCode(Buffer.from('AB'), 3), { reason: 'too-short' });
  t.same(checkCode(Buffer.from([0x41, 0xff, 0x42, 0x43]), 3), { reason: 'not-utf8' });
  t.same(checkCode(Buffer.from('Ñ-1234', 'utf8'), 3), { value: 'Ñ-1234' });
});

t.test('scanner on a pseudo-terminal', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-barcode-'));
  const pty = await startPtyPair(path.join(directory, 'scanner'), path.join(directory, 'scanner-test'));
  t.teardown(async () => {
    await pty.unplug();
    await rm(directory, { recursive: true, force: true });
  });
  const { log, lines } = memoryLogger();
  const scanner = new BarcodeScanner({ config: barcodeSchema.parse({ path: pty.devicePath, reopenIntervalMs: 200, maxLineLength: 32 }), log });
  const codes: string[] = [];
  const rejected: string[] = [];
  scanner.on('codeScanned', ({ value }) => codes.push(value));
  scanner.on('codeRejected', ({ reason }) => rejected.push(reason));
  await scanner.start();
  t.teardown(() => scanner.stop());
  t.equal(scanner.status().connected, true);

  const writer = await open(pty.testPath, 'w');
  await writer.write(Buffer.from('ACC-0001\r\n'));
  await writer.write(Buffer.from('ACC-00'));
  await writer.write(Buffer.from('02\r\n\x1b[A\r\nX\r\n'));
  await writer.write(Buffer.from(`${'9'.repeat(100)}\r\nPID-77\n`));
  await waitFor(() => codes.length >= 3 && rejected.length >= 3, 5_000, 'codes and noise');
  t.same(codes, ['ACC-0001', 'ACC-0002', 'PID-77'], 'a code split across writes is joined');
  t.same(rejected, ['control-characters', 'too-short', 'too-long']);
  t.equal(scanner.status().codes, 3);
  t.notMatch(lines(), /ACC-000|PID-77/, 'codes are never logged');
  await writer.close();

  // Unplugged and plugged in again: the scanner reconnects by itself.
  const disconnected = new Promise((resolve) => scanner.once('disconnected', resolve));
  await pty.unplug();
  await disconnected;
  t.equal(scanner.status().connected, false);
  await pty.plug();
  await waitFor(() => scanner.status().connected, 5_000, 'reconnect');
  const again = await open(pty.testPath, 'w');
  await again.write(Buffer.from('ACC-0003\r\n'));
  await waitFor(() => codes.length >= 4, 5_000, 'a code after the reconnect');
  t.equal(codes[3], 'ACC-0003');
  await again.close();
});
