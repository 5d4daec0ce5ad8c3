import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parse, stringify } from 'yaml';
import type { ConformanceStatement, PresentationContextRow } from '../../src/conformance/conformance-statement.js';
import { buildVideoEndoscopicImage } from '../../src/dicom/video-endoscopic.js';
import { chooseH264TransferSyntax } from '../../src/dicom/video-transfer-syntax.js';
import { buildVlEndoscopicImage, readObjectMetadata } from '../../src/dicom/vl-endoscopic.js';
import { createLogger } from '../../src/log.js';
import { CommitmentListener } from '../../src/pacs/commitment-listener.js';
import { requestCommitment } from '../../src/pacs/commitment-scu.js';
import { encodeAssociateRequest } from '../../src/pacs/pdu.js';
import { echo, storeObjects, type StoreObject } from '../../src/pacs/store-scu.js';
import { loadProfile } from '../../src/profile/load-profile.js';
import { dicomDestinations } from '../../src/profile/schema.js';
import { parameterSets, parseSps } from '../../src/video/h264-bitstream.js';
import { MppsQueue } from '../../src/worklist/mpps-queue.js';
import { MppsSender } from '../../src/worklist/mpps-sender.js';
import { Tag } from '../../src/worklist/tags.js';
import { queryWorklist } from '../../src/worklist/worklist-client.js';
import { buildWorklistQuery } from '../../src/worklist/worklist-query.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { encodeBaselineJpeg, run, sampleInput, UID_ROOT } from '../dicom/fixtures/dicom.js';
import { parseAssociateAccept, readPdu, startAssociationRecorder, type AssociateRequestOnWire } from './association-recorder.js';

// Silent: these tests check what goes on the wire, not log lines.
const log = createLogger('silent');

/** Called AE title of each activity's peer, so that the recorder can tell the associations apart. */
const calledAeTitles = { store: 'STORE_SCP', commitment: 'COMMIT_SCP', worklist: 'WORKLIST_SCP', mpps: 'MPPS_SCP', verify: 'STORE_SCP' } as const;

const explicitLittleEndian = '1.2.840.10008.1.2.1';
const implicitLittleEndian = '1.2.840.10008.1.2';
const explicitBigEndian = '1.2.840.10008.1.2.2';
const storageCommitment = '1.2.840.10008.1.20.1';

/** `abstract syntax|transfer syntax` of every pair in a set of statement rows. */
function statementPairs(rows: PresentationContextRow[]): Set<string> {
  return new Set(rows.flatMap((row) => row.transferSyntaxes.map((syntax) => `${row.abstractSyntax.uid}|${syntax.uid}`)));
}

/** `abstract syntax|transfer syntax` of every pair proposed in some associations. */
function wirePairs(requests: AssociateRequestOnWire[]): Set<string> {
  return new Set(requests.flatMap((request) => request.contexts.flatMap((context) => context.transferSyntaxUids.map((uid) => `${context.abstractSyntaxUid}|${uid}`))));
}

function sorted(pairs: Set<string>): string[] {
  return [...pairs].sort();
}

async function statementJson(t: Test, profileFile: string): Promise<ConformanceStatement> {
  const result = await runCli('conformance', '--profile', profileFile, '--format', 'json');
  t.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ConformanceStatement;
}

/** Makes an H.264 stream with the ffmpeg CLI at one level and chooses its transfer syntax as the clip pipeline does. */
async function h264Clip(directory: string, level: '4.1' | '4.2', frameRate: number): Promise<{ stream: Buffer; transferSyntaxUid: string }> {
  const file = path.join(directory, `clip-${level}.h264`);
  await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=s=320x240:r=${frameRate}`, '-frames:v', '10', '-c:v', 'libx264', '-profile:v', 'high', '-level', level, '-pix_fmt', 'yuv420p', '-f', 'h264', file]);
  const stream = await readFile(file);
  const { sps } = parameterSets(stream);
  if (sps === undefined) throw new Error(`ffmpeg wrote no SPS for level ${level}`);
  const choice = chooseH264TransferSyntax({ ...parseSps(sps), frameRate });
  if (!choice.ok) throw new Error(`level ${level} stream fits no transfer syntax: ${choice.reason}`);
  return { stream, transferSyntaxUid: choice.transferSyntaxUid };
}

/** Builds a still and a clip at each H.264 level with the object builders the capture code uses. */
async function capturedObjects(directory: string): Promise<StoreObject[]> {
  const jpeg = await encodeBaselineJpeg(directory, 64, 48, () => [128, 64, 32]);
  const still = buildVlEndoscopicImage(sampleInput(jpeg, 64, 48));
  const objects = [still];
  for (const [index, [level, frameRate]] of ([['4.1', 25], ['4.2', 60]] as const).entries()) {
    const { stream, transferSyntaxUid } = await h264Clip(directory, level, frameRate);
    const { jpeg: _jpeg, ...common } = sampleInput(Buffer.alloc(0), 320, 240, { sopInstanceUid: `${UID_ROOT}.1.2.${index + 1}` });
    objects.push(buildVideoEndoscopicImage({ ...common, stream, transferSyntaxUid, numberOfFrames: 10, frameRate }));
  }
  return objects.map((part10, index) => ({ id: `object-${index + 1}`, part10, ...readObjectMetadata(part10) }));
}

t.test('statement contexts are the ones proposed on the wire', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-conformance-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const recorder = await startAssociationRecorder();
  t.teardown(() => recorder.stop());

  const connection = { host: '127.0.0.1', port: recorder.port, connectTimeoutMs: 2_000, associationTimeoutMs: 2_000, requestTimeoutMs: 2_000 };
  const file = await writeTestProfile({
    directory,
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: recorder.port, calledAeTitle: calledAeTitles.store, storageCommitment: { enabled: true } }],
    commitmentListener: { host: '127.0.0.1', port: 11113, allowedPeers: [{ aeTitle: 'PACS', host: '127.0.0.1' }] },
    sections: {
      worklist: { ...connection, calledAeTitle: calledAeTitles.worklist },
      mpps: { ...connection, calledAeTitle: calledAeTitles.mpps, retry: { initialMs: 60_000, maxMs: 60_000 } },
    },
  });
  const statement = await statementJson(t, file);
  const profile = await loadProfile(file);
  const destination = dicomDestinations(profile)[0];
  if (destination === undefined || profile.worklist === undefined || profile.mpps === undefined) throw new Error('test profile lacks a peer');
  // The commitment request goes to the storage destination under another called AE title, so that its association can be identified.
  const commitmentDestination = { ...destination, calledAeTitle: calledAeTitles.commitment };
  const callingAeTitle = profile.station.aeTitle;

  const objects = await capturedObjects(directory);
  const stored = await storeObjects({ destination, callingAeTitle, log, objects });
  t.same(stored.map((result) => result.associated), [false, false, false], 'the recorder rejected the store association');

  const echoed = await echo({ destination, callingAeTitle, log });
  t.equal(echoed.ok, false, 'the recorder rejected the C-ECHO association');

  await t.rejects(queryWorklist({ server: profile.worklist, callingAeTitle, identifier: buildWorklistQuery({ modality: 'ES', fromDate: '20261204', toDate: '20261204' }), log }));

  const outcome = await requestCommitment({
    destination: commitmentDestination,
    callingAeTitle,
    transactionUid: `${UID_ROOT}.9.1`,
    objects: objects.map(({ sopClassUid, sopInstanceUid }) => ({ sopClassUid, sopInstanceUid })),
    reportWaitMs: 0,
    sink: { applyResult: () => Promise.reject(new Error('no result expected from a rejected association')) },
    log,
  });
  t.not(outcome.kind, 'requested', 'the recorder rejected the N-ACTION association');

  const queue = new MppsQueue({ directory: path.join(directory, 'mpps'), log });
  await queue.open();
  await queue.queueCreate(`${UID_ROOT}.9.2`, 'E20261204-100000', [{ tag: Tag.PerformedProcedureStepStatus, vr: 'CS', value: 'IN PROGRESS' }]);
  const sender = new MppsSender({ config: profile.mpps, callingAeTitle, queue, log });
  sender.start();
  await waitFor(() => recorder.requests.some((request) => request.calledAeTitle === calledAeTitles.mpps), 10_000, 'the MPPS association request');
  await sender.stop();

  const byActivity = (id: keyof typeof calledAeTitles): AssociateRequestOnWire[] => {
    const requests = recorder.requests.filter((request) => request.calledAeTitle === calledAeTitles[id]);
    // The store and verification activities share a peer: the first request is the C-STORE batch, the second the C-ECHO.
    if (id === 'store') return requests.slice(0, 1);
    if (id === 'verify') return requests.slice(1, 2);
    return requests;
  };
  t.equal(recorder.requests.length, 5, 'one association request per activity');

  for (const activity of statement.initiation) {
    const onWire = wirePairs(byActivity(activity.id));
    const listed = statementPairs(activity.presentationContexts);
    t.same(sorted(onWire), sorted(listed), `${activity.id}: proposed pairs equal the statement's`);
    t.ok(activity.configured, `${activity.id} is configured in the test profile`);
  }

  const everyListed = statementPairs(statement.initiation.flatMap((activity) => activity.presentationContexts));
  const everyProposed = wirePairs(recorder.requests);
  for (const pair of everyListed) t.ok(everyProposed.has(pair), `statement pair ${pair} is proposed`);
  for (const pair of everyProposed) t.ok(everyListed.has(pair), `proposed pair ${pair} is in the statement`);

  const listedClasses = new Set(statement.networkServices.map((service) => service.sopClass.uid));
  const proposedClasses = new Set(recorder.requests.flatMap((request) => request.contexts.map((context) => context.abstractSyntaxUid)));
  t.same([...proposedClasses].sort(), [...listedClasses].sort(), 'network services are the SOP classes proposed');

  for (const request of recorder.requests) {
    t.equal(request.implementationClassUid, statement.implementation.classUid, `${request.calledAeTitle}: Implementation Class UID`);
    t.equal(request.implementationVersionName, statement.implementation.versionName, `${request.calledAeTitle}: Implementation Version Name`);
    t.equal(request.maxPduLength, statement.implementation.maxReceivePduLength, `${request.calledAeTitle}: maximum PDU length`);
    t.equal(request.callingAeTitle, statement.stationAeTitle, `${request.calledAeTitle}: calling AE title`);
    t.same(request.otherUserItems, [], `${request.calledAeTitle}: no role selection or extended negotiation, as the statement says`);
  }
  for (const activity of statement.initiation) {
    for (const row of activity.presentationContexts) {
      t.equal(row.extendedNegotiation, 'None');
      t.equal(row.role, 'SCU');
    }
  }
});

t.test('listener accepts exactly the statement table', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-conformance-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const file = await writeTestProfile({
    directory,
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: 11112, calledAeTitle: 'PACS', storageCommitment: { enabled: true } }],
    commitmentListener: { host: '127.0.0.1', port: 11113, allowedPeers: [{ aeTitle: 'PACS', host: '127.0.0.1' }] },
  });
  const statement = await statementJson(t, file);
  const profile = await loadProfile(file);
  const config = profile.commitmentListener;
  if (config === undefined) throw new Error('test profile lacks the listener');
  const acceptance = statement.acceptance[0];
  if (acceptance === undefined) throw new Error('statement lists no acceptance activity');
  t.same(acceptance.listener, { host: '127.0.0.1', port: 11113, aeTitle: profile.station.aeTitle, allowedPeers: [{ aeTitle: 'PACS', host: '127.0.0.1' }] });

  const listener = new CommitmentListener({
    config: { ...config, port: 0 },
    aeTitle: profile.station.aeTitle,
    sink: { applyResult: () => Promise.reject(new Error('no result expected')) },
    log,
  });
  const port = await listener.start();
  t.teardown(() => listener.stop());

  // One context per abstract syntax and transfer syntax that appears anywhere in the statement, plus Explicit VR Big Endian.
  const everyRow = [...statement.initiation.flatMap((activity) => activity.presentationContexts), ...acceptance.presentationContexts];
  const abstractSyntaxes = [...new Set(everyRow.map((row) => row.abstractSyntax.uid))];
  const transferSyntaxes = [...new Set([...everyRow.flatMap((row) => row.transferSyntaxes.map((syntax) => syntax.uid)), explicitBigEndian])];
  const single = abstractSyntaxes.flatMap((abstractSyntaxUid) => transferSyntaxes.map((transferSyntaxUid) => ({ abstractSyntaxUid, transferSyntaxUids: [transferSyntaxUid] })));
  // The accepted syntax follows the requester's order among acceptable ones.
  const ordered = [
    { abstractSyntaxUid: storageCommitment, transferSyntaxUids: [explicitBigEndian, implicitLittleEndian, explicitLittleEndian] },
    { abstractSyntaxUid: storageCommitment, transferSyntaxUids: [explicitLittleEndian, implicitLittleEndian] },
  ];
  const proposals = [...single, ...ordered].map((context, index) => ({ id: 2 * index + 1, ...context }));
  t.ok(proposals.length <= 128, 'the proposals fit into one association');

  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const answer = readPdu(socket);
  socket.write(
    encodeAssociateRequest({
      calledAeTitle: profile.station.aeTitle,
      callingAeTitle: 'PACS',
      contexts: proposals,
      // Above any listener's limit, so that the A-ASSOCIATE-AC shows the listener's own.
      maxPduLength: 16 * 1024 * 1024,
      implementationClassUid: '1.2.3.4.5.6.7',
      implementationVersionName: 'TEST_PACS_1',
    }),
  );
  const pdu = await answer;
  t.equal(pdu.type, 0x02, 'the listener accepts the association');
  const accept = parseAssociateAccept(pdu.body);

  const acceptedPairs = new Set<string>();
  for (const context of accept.contexts.filter((answered) => answered.id <= 2 * single.length)) {
    const proposal = proposals.find((candidate) => candidate.id === context.id);
    if (proposal === undefined) throw new Error(`answer for context ${context.id}, which was not proposed`);
    if (context.result === 0) acceptedPairs.add(`${proposal.abstractSyntaxUid}|${context.transferSyntaxUid ?? ''}`);
    const abstractListed = acceptance.presentationContexts.some((row) => row.abstractSyntax.uid === proposal.abstractSyntaxUid);
    if (context.result !== 0) t.equal(context.result, abstractListed ? 4 : 3, `context ${proposal.abstractSyntaxUid} ${proposal.transferSyntaxUids[0] ?? ''} rejected with the reason the statement gives`);
  }
  t.equal(accept.contexts.length, proposals.length, 'every context is answered');
  t.same(sorted(acceptedPairs), sorted(statementPairs(acceptance.presentationContexts)), 'accepted pairs equal the statement table, both ways');

  const orderedAnswers = accept.contexts.filter((answered) => answered.id > 2 * single.length);
  t.same(
    orderedAnswers.map((answered) => answered.transferSyntaxUid),
    [implicitLittleEndian, explicitLittleEndian],
    'the first acceptable transfer syntax in the requester\'s order is accepted',
  );
  t.equal(accept.implementationClassUid, statement.implementation.classUid, 'the A-ASSOCIATE-AC carries endocap\'s Implementation Class UID');
  t.equal(accept.implementationVersionName, statement.implementation.versionName, 'and its Implementation Version Name');
  t.equal(accept.maxPduLength, acceptance.maxPduLength, 'the A-ASSOCIATE-AC announces the maximum PDU length the statement gives');
});

t.test('shipped statement equals the generated one', async (t) => {
  const shipped = await readFile(path.resolve(import.meta.dirname, '../../docs/conformance-statement.md'), 'utf8');
  const result = await runCli('conformance');
  t.equal(result.code, 0, result.stderr);
  // Regenerate with `npm run conformance:docs` when this fails after an intended change.
  t.equal(result.stdout, shipped, 'docs/conformance-statement.md is up to date');
});

t.test('statement lists stow-rs destinations apart from dicom peers', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-conformance-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const file = await writeTestProfile({ directory, destinations: [{ name: 'pacs', host: '127.0.0.1', port: 11112, calledAeTitle: 'PACS' }] });
  const document = parse(await readFile(file, 'utf8')) as { destinations: Array<Record<string, unknown>> };
  document.destinations.push({ kind: 'stow-rs', name: 'archive-web', url: 'https://127.0.0.1:8443/dicom-web', auth: { kind: 'bearer', tokenFile: 'token' } });
  // The `kind` field exists from format version 2 on.
  await writeFile(file, stringify({ ...document, formatVersion: 2, destinations: document.destinations.map((entry) => ({ kind: 'dicom', ...entry })) }));

  const statement = await statementJson(t, file);
  t.same(statement.stowRs, [{ name: 'archive-web', url: 'https://127.0.0.1:8443/dicom-web', authentication: 'bearer', tls: true }]);
  const store = statement.initiation.find((activity) => activity.id === 'store');
  t.same(store?.peers.map((peer) => peer.name), ['pacs'], 'only the dicom destination is a C-STORE peer');

  const markdown = await runCli('conformance', '--profile', file);
  t.equal(markdown.code, 0, markdown.stderr);
  t.match(markdown.stdout, /\| archive-web \| https:\/\/127\.0\.0\.1:8443\/dicom-web \| bearer \| Yes \|/);
  t.notMatch(markdown.stdout, /This profile has no DICOMweb destination/);
});

t.test('conformance help and bad arguments', async (t) => {
  const help = await runCli('conformance', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: endocap conformance \[--profile FILE\] \[--format markdown\|json\]/);

  const badFormat = await runCli('conformance', '--format', 'pdf');
  t.equal(badFormat.code, 64);
  t.match(badFormat.stderr, /invalid --format "pdf": expected markdown or json/);

  const missing = await runCli('conformance', '--profile', '/nonexistent/profile.yaml');
  t.equal(missing.code, 78);
  t.match(missing.stderr, /\/nonexistent\/profile\.yaml: .*file not found/);
});
