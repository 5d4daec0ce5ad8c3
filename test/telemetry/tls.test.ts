import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import t from 'tap';
import { makeCa, makeSignedCertificate } from '../helpers/certificates.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/ports.js';
import { createTelemetry, observe } from './helpers.js';

const run = promisify(execFile);
const PASSWORD = 'pw-Secret-5f1c9';

function captureLog(): { log: pino.Logger; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { log: pino({ level: 'trace' }, stream), text: () => text };
}

t.test('telemetry connects with TLS, a client certificate and a credentials file', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-mqtt-tls-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const ca = await makeCa(directory, 'fleet-ca');
  const otherCa = await makeCa(directory, 'other-ca');
  const server = await makeSignedCertificate(directory, 'broker', ca, { usage: 'serverAuth', subjectAltName: 'IP:127.0.0.1' });
  const client = await makeSignedCertificate(directory, 'box', ca, { usage: 'clientAuth' });
  const passwordFile = path.join(directory, 'passwords');
  await run('mosquitto_passwd', ['-c', '-b', passwordFile, 'box-user', PASSWORD]);
  const credentialsFile = path.join(directory, 'mqtt-credentials.yaml');
  await writeFile(credentialsFile, `username: box-user\npassword: ${PASSWORD}\n`, { mode: 0o600 });
  const wrongCredentialsFile = path.join(directory, 'wrong-credentials.yaml');
  await writeFile(wrongCredentialsFile, 'username: box-user\npassword: not-it\n', { mode: 0o600 });

  const broker = await startMosquitto({ tls: { caFile: ca.certFile, certFile: server.certFile, keyFile: server.keyFile, requireCertificate: true }, passwordFile });
  t.teardown(() => broker.stop());
  t.match(broker.url, /^mqtts:/);
  const observer = await observe(broker, 'fleet/#', { ca: await readText(ca.certFile), cert: await readText(client.certFile), key: await readText(client.keyFile), username: 'box-user', password: PASSWORD });
  t.teardown(() => observer.close());

  const logs = captureLog();
  const tls = { caFile: ca.certFile, certFile: client.certFile, keyFile: client.keyFile };
  const good = createTelemetry(broker.url, 'box-tls', { log: logs.log, mqtt: { tls, credentialsFile } });
  t.teardown(() => good.stop());
  await good.start();
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'fleet/box-tls/availability' && message.text === 'online'), 'online over TLS');

  const untrusted = createTelemetry(broker.url, 'box-untrusted', { log: logs.log, mqtt: { tls: { ...tls, caFile: otherCa.certFile }, credentialsFile } });
  t.teardown(() => untrusted.stop(200));
  const wrongPassword = createTelemetry(broker.url, 'box-wrong', { log: logs.log, mqtt: { tls, credentialsFile: wrongCredentialsFile } });
  t.teardown(() => wrongPassword.stop(200));
  await untrusted.start();
  await wrongPassword.start();
  await waitFor(() => (logs.text().match(/broker connection failed/g) ?? []).length >= 4, 10_000, 'failed attempts to be logged');
  t.notOk(untrusted.connected, 'a broker certificate from another CA is rejected');
  t.notOk(wrongPassword.connected, 'a wrong password is rejected');
  t.match(logs.text(), /self[- ]signed|unable to verify|certificate/i, 'the certificate failure is logged');
  t.notOk(logs.text().includes(PASSWORD), 'the password appears in no log line');
  t.notOk(logs.text().includes('not-it'), 'the wrong password appears in no log line either');
});

t.test('credentials file errors name the file, not its content', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-mqtt-credentials-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const file = path.join(directory, 'credentials.yaml');
  await writeFile(file, `user: box\npassword: ${PASSWORD}\n`);
  const telemetry = createTelemetry('mqtt://127.0.0.1:1', 'box-bad', { mqtt: { credentialsFile: file } });
  await t.rejects(telemetry.start(), { code: 'MQTT_CONFIG_INVALID', message: new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*username: missing or not a string`) });
  try {
    await createTelemetry('mqtt://127.0.0.1:1', 'box-bad', { mqtt: { credentialsFile: file } }).start();
  } catch (error) {
    t.notOk((error as Error).message.includes(PASSWORD), 'the password is not in the message');
  }
  await telemetry.stop(100);
  const missing = createTelemetry('mqtt://127.0.0.1:1', 'box-missing', { mqtt: { credentialsFile: path.join(directory, 'absent.yaml') } });
  await t.rejects(missing.start(), { code: 'MQTT_CONFIG_INVALID', message: /credentialsFile .*absent\.yaml cannot be read \(ENOENT\)/ });
  await missing.stop(100);
});

async function readText(file: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(file, 'utf8');
}
