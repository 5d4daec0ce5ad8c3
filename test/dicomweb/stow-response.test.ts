import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readAuthorization } from '../../src/dicomweb/credentials.js';
import { groupObjects } from '../../src/dicomweb/stow-rs.js';
import { parseStowResponse } from '../../src/dicomweb/stow-response.js';
import { judgeResponse } from '../../src/dicomweb/stow-status.js';
import { stowResponse } from './stow-server.js';

const json = 'application/dicom+json';

t.test('response parser reads both sequences', async (t) => {
  const body = Buffer.from(JSON.stringify(stowResponse([{ uid: '1.2.3' }, { uid: '1.2.4', warning: 0xb006 }], [{ uid: '1.2.5', reason: 0xa900 }, { uid: '1.2.6' }])));
  const report = parseStowResponse(body, json);
  t.same(report?.get('1.2.3'), { kind: 'stored' });
  t.same(report?.get('1.2.4'), { kind: 'stored', warningCode: 0xb006 });
  t.same(report?.get('1.2.5'), { kind: 'failed', code: 0xa900 });
  t.same(report?.get('1.2.6'), { kind: 'failed' }, 'failure without a reason');
});

t.test('response parser rejects malformed bodies', async (t) => {
  const cases: Array<[string, string, string | undefined]> = [
    ['empty body', '', json],
    ['not JSON', '{"00081198": ', json],
    ['XML content type', '{}', 'application/dicom+xml'],
    ['JSON scalar', '42', json],
    ['array of scalars', '[1]', json],
  ];
  for (const [name, text, contentType] of cases) t.equal(parseStowResponse(Buffer.from(text), contentType), undefined, name);

  const wrongTypes = { '00081198': { vr: 'SQ', Value: [{ '00081155': { vr: 'UI', Value: [5] }, '00081197': { vr: 'US', Value: ['A700'] } }, 'item', null] } };
  t.same([...(parseStowResponse(Buffer.from(JSON.stringify(wrongTypes)), json) ?? new Map()).entries()], [], 'items without a string UID are skipped');
  const badCode = { '00081198': { vr: 'SQ', Value: [{ '00081155': { vr: 'UI', Value: ['1.2.3'] }, '00081197': { vr: 'US', Value: [70000] } }] } };
  t.same(parseStowResponse(Buffer.from(JSON.stringify(badCode)), json)?.get('1.2.3'), { kind: 'failed' }, 'a code out of the US range is ignored');
});

t.test('status classification table', async (t) => {
  const facts = { report: undefined, sopInstanceUids: ['1.2.3'], destination: 'web', requestBytes: 1000, authenticated: true };
  const cases: Array<[number, string, boolean, string | undefined]> = [
    [200, 'stored', true, undefined],
    [202, 'transient', true, undefined],
    [400, 'permanent', true, undefined],
    [401, 'transient', true, 'credentials'],
    [403, 'transient', true, 'credentials'],
    [404, 'transient', true, 'configuration'],
    [302, 'transient', true, 'configuration'],
    [408, 'transient', true, undefined],
    [409, 'permanent', true, undefined],
    [413, 'permanent', true, 'configuration'],
    [415, 'transient', true, 'configuration'],
    [429, 'transient', true, undefined],
    [500, 'transient', true, undefined],
    [503, 'transient', false, undefined],
  ];
  for (const [status, outcome, reachable, fault] of cases) {
    const verdict = judgeResponse({ ...facts, status });
    t.equal(verdict.objects[0]?.outcome, outcome, `${status} outcome`);
    t.equal(verdict.reachable, reachable, `${status} reachable`);
    t.equal(verdict.fault?.kind, fault, `${status} fault`);
  }
});

t.test('clips go alone in request groups', async (t) => {
  const object = (id: string, transferSyntaxUid: string) => ({ id, sopClassUid: '1.2', sopInstanceUid: id, transferSyntaxUid, read: async () => Buffer.alloc(0) });
  const jpeg = '1.2.840.10008.1.2.4.50';
  const h264 = '1.2.840.10008.1.2.4.102';
  const groups = groupObjects([object('a', jpeg), object('b', jpeg), object('c', h264), object('d', jpeg), object('e', jpeg), object('f', jpeg)], 2);
  t.same(groups.map((group) => group.map((item) => item.id)), [['a', 'b'], ['c'], ['d', 'e'], ['f']]);
});

t.test('credential files are checked without quoting the secret', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'endocap-stow-credentials-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const file = join(directory, 'secret');
  const cases: Array<[string, 'bearer' | 'basic', string, RegExp]> = [
    ['empty token', 'bearer', '  \n', /is empty: write the bearer token into it$/],
    ['token over two lines', 'bearer', 'abc\nSECRETPART', /contains characters not allowed in a bearer token/],
    ['invalid YAML', 'basic', 'username: [SECRETPART', /is not valid YAML/],
    ['no password', 'basic', 'username: a\n', /password missing or not a string/],
    ['numeric password', 'basic', 'username: a\npassword: 1234\n', /password missing or not a string \(quote it/],
    ['colon in username', 'basic', 'username: "a:b"\npassword: SECRETPART\n', /username contains ":"/],
  ];
  for (const [name, kind, text, expected] of cases) {
    await writeFile(file, text);
    const auth = kind === 'bearer' ? { kind, tokenFile: file } : { kind, credentialsFile: file };
    const error = await readAuthorization(auth).then(
      () => undefined,
      (caught: unknown) => caught as Error,
    );
    t.match(error?.message, expected, name);
    t.notOk(error?.message.includes('SECRETPART'), `${name}: message has no secret`);
  }
  await writeFile(file, 'username: endocap\npassword: "pa ss"\n');
  t.equal((await readAuthorization({ kind: 'basic', credentialsFile: file }))?.header, `Basic ${Buffer.from('endocap:pa ss').toString('base64')}`);
});
