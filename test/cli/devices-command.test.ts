import t from 'tap';
import { runCli } from '../helpers/cli.js';

t.test('devices lists video devices and serial ports', async (t) => {
  const result = await runCli('devices');
  t.equal(result.code, 0, result.stderr);
  t.match(result.stdout, /^Video devices:\n/);
  t.match(result.stdout, /\nSerial ports:\n/);
  // This machine has no capture card; a device line would start with /dev/video.
  t.match(result.stdout, /Video devices:\n( {2}(no video devices found|\/dev\/video\d+)\n)/);
  t.match(result.stdout, /Serial ports:\n {2}(no serial ports found|\/dev\/\S+)/);
});

t.test('devices help and bad arguments', async (t) => {
  const help = await runCli('devices', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /Exit codes/);
  t.equal((await runCli('devices', 'extra')).code, 64);
});
