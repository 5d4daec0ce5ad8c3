import type {
  AcceptanceActivity,
  ActivityId,
  ConformanceStatement,
  InitiationActivity,
  NamedUid,
  PeerEntry,
  PresentationContextRow,
} from './conformance-statement.js';

/**
 * Renders a conformance statement as Markdown, in the section structure of
 * the DICOM PS3.2 Annex A template: overview, introduction, networking
 * (implementation model, AE specifications, network interfaces,
 * configuration), media and web services, character sets, security.
 * Tables come from the statement data; the prose states the behaviour of the
 * code each activity runs.
 */

function table(header: string[], body: string[][]): string[] {
  const escape = (cell: string): string => cell.replace(/\|/g, '\\|');
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...body.map((row) => `| ${row.map(escape).join(' | ')} |`)];
}

const yesNo = (value: boolean): string => (value ? 'Yes' : 'No');

function uidCell(uid: NamedUid): string {
  return `${uid.name} (${uid.uid})`;
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}

function contextTable(contexts: PresentationContextRow[]): string[] {
  const body = contexts.map((context) => [
    context.abstractSyntax.name,
    context.abstractSyntax.uid,
    context.transferSyntaxes.map((syntax) => syntax.name).join('<br>'),
    context.transferSyntaxes.map((syntax) => syntax.uid).join('<br>'),
    context.role,
    context.extendedNegotiation,
  ]);
  return table(['Abstract Syntax', 'UID', 'Transfer Syntaxes', 'UIDs', 'Role', 'Extended Negotiation'], body);
}

function peerTable(peers: PeerEntry[]): string[] {
  const body = peers.map((peer) => [
    peer.name,
    peer.calledAeTitle,
    peer.callingAeTitle,
    `${peer.host}:${peer.port}`,
    peer.tls === null ? 'TCP' : 'TLS',
    seconds(peer.connectTimeoutMs),
    seconds(peer.associationTimeoutMs),
    seconds(peer.requestTimeoutMs),
  ]);
  return table(['Peer', 'Called AE Title', 'Calling AE Title', 'Address', 'Transport', 'Connect time-out', 'Association time-out', 'Request time-out'], body);
}

/** Description and sequencing, and SOP specific conformance, of each initiation activity. */
const activityText: Record<ActivityId, { sequencing: string[]; sopSpecific: string[] }> = {
  store: {
    sequencing: [
      'Each captured still and clip is written to the spool on disk before it is sent. One sender per DICOM destination sends queued objects oldest first. An association is opened for a batch of objects and goes on taking batches while the oldest queued objects are ones its accepted presentation contexts can carry, up to 1000 objects; then it is released. Objects that do not fit into one association\'s presentation contexts wait for the next association. Objects of a SOP class and transfer syntax for which the peer accepted no presentation context stay queued and are offered again after the destination\'s `retry.maxMs`; other objects are sent meanwhile. After a failure the sender retries with exponential backoff, jitter and a cap (`retry` of the destination).',
      'The table lists the contexts for the objects endocap creates; an association proposes only the contexts of the objects in its batch. An object added with `endocap queue import` is proposed in its own SOP class and transfer syntax and, when that syntax is uncompressed, in a second context with Explicit and Implicit VR Little Endian.',
    ],
    sopSpecific: [
      'Each object is sent in the transfer syntax it was written in; compressed objects are never converted. When the peer accepts no context for an object, the object stays queued and is retried later.',
      'C-STORE response statuses: Success (0000) stores the object. Warnings (0001, 0107, 0116, Bxxx) and Duplicate SOP Instance (0111) count as stored. Out of Resources (A7xx) and Resource Limitation (0213) are retried with backoff. Every other failure sets the object aside: it is kept and reported, and sent again only on an operator\'s `endocap queue retry`.',
      'A clip longer than the destination\'s `maxObjectBytes` is split into consecutive clips below that size.',
    ],
  },
  commitment: {
    sequencing: [
      'For a destination with `storageCommitment.enabled`, objects stored there are named in an N-ACTION request (Request Storage Commitment, Action Type ID 1) `requestDelayMs` after they were stored, up to `batchSize` objects per transaction, on an association opened for the request. The transaction is recorded on disk before the request is sent.',
      'The association stays open up to `reportWaitMs` after the N-ACTION response. A result (N-EVENT-REPORT) the PACS sends on it is answered there; any other request on it is answered with status 0211 (Unrecognized Operation). Otherwise the PACS sends the result on an association it opens to the Storage Commitment listener (see the Association Acceptance Policy).',
    ],
    sopSpecific: [
      'N-ACTION response statuses: Success and warnings (0001, 0107, 0116, Bxxx) mean the request was accepted. Resource Limitation (0213), Processing Failure (0110) and Out of Resources (A7xx) are retried with backoff. Any other failure, or a permanent rejection of the association, marks the destination as not supporting Storage Commitment: its objects stay stored and it is asked again after `unsupportedRetryMs`, doubling up to 24 hours.',
      'Objects without a result after `resultTimeoutMs` are requested again in a new transaction. Objects the result reports as failed are queued again and sent to the destination again.',
    ],
  },
  worklist: {
    sequencing: [
      'The worklist server is queried at start-up, every `refreshIntervalMs`, and on the operator command `endocap worklist refresh`, on a new association per query. Matching keys: Scheduled Procedure Step Start Date (a range from `daysBefore` days before today to `daysAfter` days after), Modality (`modality`, unless null) and Scheduled Station AE Title (unless `matchStationAeTitle` is false). The query requests patient, study, requested procedure and scheduled step attributes as return keys.',
    ],
    sopSpecific: [
      'Pending responses with status FF00 and FF01 each carry a match. A query whose final status is not Success fails and is retried with backoff. A query that returns more than `maxEntries` entries is cut there with an A-ABORT, because no C-CANCEL is sent; a whole query is limited to `queryTimeoutMs`. The identifier sent has no Specific Character Set: every matching key is ASCII.',
    ],
  },
  mpps: {
    sequencing: [
      'When an exam with a worklist procedure starts, an MPPS instance is created with N-CREATE (status IN PROGRESS); when the exam ends, N-SET sets it to COMPLETED or DISCONTINUED. Messages are queued on disk and sent in order on one association per pass over the queue.',
    ],
    sopSpecific: [
      'Success and warnings (0001, 0107, 0116, Bxxx) mark a message as sent; 0111 (Duplicate SOP Instance) to an N-CREATE also does, because an earlier attempt arrived. Processing Failure (0110), Resource Limitation (0213) and Out of Resources (A7xx) are retried with backoff up to `maxAttempts`; any other failure sets the instance aside.',
    ],
  },
  verify: {
    sequencing: [
      'The operator command `endocap echo` sends one C-ECHO to every DICOM destination and to the worklist server, one after the other, each on its own association. The remote command `echo-destinations` (over MQTT, when `mqtt.commands` is enabled) does the same for every DICOM destination at once. The daemon sends no C-ECHO otherwise.',
    ],
    sopSpecific: ['A peer passes when the C-ECHO response status is Success (0000).'],
  },
};

function overview(statement: ConformanceStatement): string[] {
  const body = statement.networkServices.map((service) => [service.sopClass.name, yesNo(service.user), yesNo(service.provider), yesNo(service.configured)]);
  return [
    '## 1 Conformance Statement Overview',
    '',
    `endocap ${statement.product.version} is a capture appliance for endoscopy: it creates VL Endoscopic Image objects (stills) and Video Endoscopic Image objects (clips) and sends them to archives with C-STORE. It queries a Modality Worklist for patient and procedure data, reports performed procedure steps with MPPS and asks archives for Storage Commitment. It provides no DICOM service to other applications: its only listener receives Storage Commitment results.`,
    '',
    'Table 1-1. Network Services',
    '',
    ...table(['SOP Class', 'User of Service (SCU)', 'Provider of Service (SCP)', 'Configured in this profile'], body),
    '',
    'endocap supports no media storage application profile.',
    '',
  ];
}

function introduction(statement: ConformanceStatement): string[] {
  return [
    '## 2 Introduction',
    '',
    `This statement is generated by \`endocap conformance\` from the tables endocap negotiates with, for one hardware profile, and describes endocap ${statement.product.version} configured by that profile. Its readers are integrators and archive administrators who know DICOM. It contains configuration only, no patient data.`,
    '',
    'References: DICOM PS3.2 (conformance), PS3.4 (service classes), PS3.5 (data structures and encoding), PS3.7 (message exchange), PS3.8 (network communication), PS3.15 (security profiles), PS3.18 (web services).',
    '',
  ];
}

function implementationModel(statement: ConformanceStatement): string[] {
  return [
    '## 3 Networking',
    '',
    '### 3.1 Implementation Model',
    '',
    '#### 3.1.1 Application Data Flow',
    '',
    '- A footswitch press takes a still or starts and stops a clip. The object is written to the spool on disk, then sent to every configured destination (C-STORE, or STOW-RS for DICOMweb destinations).',
    '- Stored objects are named in Storage Commitment requests to destinations that enable it; results arrive on the request\'s association or on the Storage Commitment listener.',
    '- The worklist is queried on a schedule. Selecting a procedure starts an exam whose objects carry the procedure\'s patient and study data and whose start and end are reported with MPPS.',
    '- An operator checks connectivity with `endocap echo`.',
    '',
    '#### 3.1.2 Functional Definition of AEs',
    '',
    `endocap is one Application Entity, with AE title ${statement.stationAeTitle} unless a peer's \`callingAeTitle\` or the listener's \`aeTitle\` sets another. It initiates associations as SCU for every service in Table 1-1 and accepts associations only to receive Storage Commitment results, also in the SCU role of that SOP class.`,
    '',
    '#### 3.1.3 Sequencing of Real-World Activities',
    '',
    'A still or clip is sent only after it is on disk. Storage Commitment is requested only for objects the destination stored. MPPS N-SET follows the N-CREATE of the same instance. Objects taken before a procedure is selected go into an unidentified-patient study.',
    '',
  ];
}

function associationPolicies(statement: ConformanceStatement): string[] {
  const { implementation } = statement;
  const listener = statement.acceptance[0];
  return [
    '##### 3.2.1.2 Association Policies',
    '',
    `General: the DICOM Application Context Name 1.2.840.10008.3.1.1.1 is proposed. Every A-ASSOCIATE-RQ announces a maximum PDU length of ${implementation.maxReceivePduLength} bytes. PDUs sent are no longer than the peer's maximum, and at most ${implementation.maxSendPduLength} bytes, and their PDV values are of even length. A peer that announces a maximum below ${implementation.minPeerPduLength} bytes is sent no data: the association is aborted and its objects stay queued. An association has at most ${implementation.maxPresentationContexts} presentation contexts.`,
    '',
    `Number of associations: each DICOM destination has one sender and, with Storage Commitment, one commitment requester, each with at most one association open at a time. The worklist client and the MPPS sender each open one at a time, and a C-ECHO opens one more per peer while it runs. The listener accepts up to ${listener?.maxAssociations ?? 0} associations at a time.`,
    '',
    'Asynchronous nature: no asynchronous operations window is negotiated; one request is outstanding per association.',
    '',
    ...table(['Implementation Identifying Information', 'Value'], [
      ['Implementation Class UID', implementation.classUid],
      ['Implementation Version Name', implementation.versionName],
    ]),
    '',
    'The listener sends the same values in its A-ASSOCIATE-AC, and the same Implementation Class UID is written into the File Meta Information of every object.',
    '',
  ];
}

function initiationSection(activity: InitiationActivity, number: number): string[] {
  const text = activityText[activity.id];
  const lines = [`###### 3.2.1.3.${number} Activity: ${activity.title}`, ''];
  lines.push(activity.configured ? 'Configured in this profile.' : 'Not configured in this profile: the table lists the contexts endocap proposes once a peer is configured.', '');
  for (const paragraph of text.sequencing) lines.push(paragraph, '');
  lines.push(`Table 3.2.1.3.${number}. Proposed Presentation Contexts`, '', ...contextTable(activity.presentationContexts), '');
  lines.push('SOP specific conformance:', '');
  for (const paragraph of text.sopSpecific) lines.push(paragraph, '');
  return lines;
}

function acceptanceSection(activity: AcceptanceActivity): string[] {
  const lines = ['##### 3.2.1.4 Association Acceptance Policy', '', `###### 3.2.1.4.1 Activity: ${activity.title}`, ''];
  if (activity.listener === null) {
    lines.push('Not configured in this profile: endocap accepts no associations. With a `commitmentListener` section it listens as described here.', '');
  } else {
    lines.push(`Configured in this profile: listening on ${activity.listener.host}:${activity.listener.port} as AE title ${activity.listener.aeTitle}.`, '');
  }
  lines.push(
    'An association is accepted only when its calling AE title and source IP address match one allowed peer and its called AE title is the listener\'s. Otherwise it is rejected as permanent with reason 3 (calling AE title not recognized) or 7 (called AE title not recognized). Beyond the maximum number of open associations it is rejected as transient, source service provider (presentation related), reason 2 (local limit exceeded).',
    '',
    `Presentation contexts of other abstract syntaxes are rejected with result 3 (abstract syntax not supported), and contexts without an acceptable transfer syntax with result 4. Of an acceptable context, the first transfer syntax in the requester's order that the table lists is accepted. An SCP/SCU Role Selection the requester proposes is returned as proposed. The A-ASSOCIATE-AC announces the requester's maximum PDU length, at most ${activity.maxPduLength} bytes. An association idle for ${seconds(activity.idleTimeoutMs)} is closed.`,
    '',
    'Table 3.2.1.4.1. Accepted Presentation Contexts',
    '',
    ...contextTable(activity.presentationContexts),
    '',
    'SOP specific conformance: each N-EVENT-REPORT (Event Type ID 1, all committed, or 2, failures exist) is matched to its transaction by Transaction UID, recorded, and answered with Success. A result for an unknown transaction is answered with Success and changes nothing (PS3.4 J.3.3). A malformed report gets the matching failure status, and a result that could not be recorded gets Processing Failure (0110), so that the PACS may send it again.',
    '',
  );
  return lines;
}

function aeSpecification(statement: ConformanceStatement): string[] {
  const services = statement.networkServices.map((service) => [service.sopClass.name, service.sopClass.uid, yesNo(service.user), yesNo(service.provider)]);
  const lines = [
    '### 3.2 AE Specifications',
    '',
    `#### 3.2.1 ${statement.stationAeTitle} AE Specification`,
    '',
    '##### 3.2.1.1 SOP Classes',
    '',
    ...table(['SOP Class Name', 'SOP Class UID', 'SCU', 'SCP'], services),
    '',
    ...associationPolicies(statement),
    '##### 3.2.1.3 Association Initiation Policy',
    '',
  ];
  statement.initiation.forEach((activity, index) => lines.push(...initiationSection(activity, index + 1)));
  for (const activity of statement.acceptance) lines.push(...acceptanceSection(activity));
  return lines;
}

function networkInterfaces(statement: ConformanceStatement): string[] {
  const tlsPeers = statement.initiation.flatMap((activity) => activity.peers).filter((peer) => peer.tls !== null);
  const names = [...new Set(tlsPeers.map((peer) => peer.name))];
  return [
    '### 3.3 Network Interfaces',
    '',
    'endocap uses the TCP/IP stack of the operating system, IPv4 and IPv6, through any of its network interfaces. Nagle\'s algorithm is turned off on every DICOM connection.',
    '',
    `DICOM over TLS (PS3.15 B.1, The Basic TLS Secure Transport Connection Profile), with TLS 1.2 or later, is used for peers with a \`tls\` section: ${names.length === 0 ? 'none in this profile' : names.join(', ')}. Unless \`tls.rejectUnauthorized\` is false, the peer certificate is verified against \`tls.caFile\` (or the system list) and the peer name (\`tls.serverName\`, else the host). A client certificate is presented when \`tls.certFile\` is set. The Storage Commitment listener accepts plain TCP only.`,
    '',
  ];
}

function configuration(statement: ConformanceStatement): string[] {
  const peers = new Map<string, PeerEntry>();
  for (const activity of statement.initiation) for (const peer of activity.peers) peers.set(peer.name, peer);
  const lines = ['### 3.4 Configuration', '', '#### 3.4.1 AE Title and Presentation Address Mapping', ''];
  lines.push(`Local AE title: ${statement.stationAeTitle} (\`station.aeTitle\`). Remote peers, from the profile:`, '');
  lines.push(...(peers.size === 0 ? ['No DICOM peers are configured.'] : peerTable([...peers.values()])), '');
  const listener = statement.acceptance[0]?.listener ?? null;
  if (listener !== null) {
    lines.push(`Storage Commitment listener: ${listener.aeTitle} on ${listener.host}:${listener.port}. Allowed peers:`, '');
    lines.push(...table(['Calling AE Title', 'Source address'], listener.allowedPeers.map((peer) => [peer.aeTitle, peer.host])), '');
  }
  lines.push(
    '#### 3.4.2 Parameters',
    '',
    'AE titles, addresses, time-outs, retry backoff, Storage Commitment timing and worklist query settings are set per peer in the hardware profile (`endocap profile schema` lists every setting with its default). The connect time-out applies to the TCP connection and again to the TLS handshake; the request time-out is the longest wait without progress while a request is sent or for each response.',
    '',
  );
  return lines;
}

function extensions(): string[] {
  return ['### 3.5 Extensions, Specializations and Privatizations', '', 'endocap uses no private SOP classes, private transfer syntaxes or private attributes, and creates no specialized SOP classes.', ''];
}

function webServices(statement: ConformanceStatement): string[] {
  const lines = ['## 4 Media Interchange and Web Services', '', 'endocap reads and writes no removable media.', ''];
  if (statement.stowRs.length === 0) {
    lines.push('This profile has no DICOMweb destination. A destination of `kind: stow-rs` sends the same objects with STOW-RS (PS3.18, Store Instances) instead of C-STORE.', '');
    return lines;
  }
  lines.push(
    'The destinations below are DICOMweb origin servers: endocap is a STOW-RS user agent (PS3.18, Store Instances). It posts objects to `<url>/studies` as multipart/related; type="application/dicom", each part one object\'s Part 10 file as written in the spool, so each object keeps the transfer syntax it was written in.',
    '',
    ...table(['Destination', 'Base URL', 'Authentication', 'HTTPS'], statement.stowRs.map((entry) => [entry.name, entry.url, entry.authentication, yesNo(entry.tls)])),
    '',
  );
  return lines;
}

function characterSets(statement: ConformanceStatement): string[] {
  const { characterSets: sets } = statement;
  return [
    '## 5 Support of Character Sets',
    '',
    'Worklist responses are decoded in the Defined Terms of Specific Character Set (0008,0005) listed below. The ISO 2022 terms use code extensions (escape sequences).',
    '',
    sets.decoded.join(', '),
    '',
    sets.assumedWhenUndeclared === null
      ? 'A response that declares no character set but contains non-ASCII bytes is read as UTF-8 when it is valid UTF-8, else as ISO_IR 100, and a warning is logged.'
      : `A response that declares no character set is read as ${sets.assumedWhenUndeclared} (\`worklist.assumedCharacterSet\`).`,
    '',
    `Objects and MPPS messages endocap writes declare ${sets.written} (UTF-8) when any text value is non-ASCII, and no Specific Character Set when every value is ASCII. Worklist query identifiers contain ASCII only.`,
    '',
  ];
}

function security(statement: ConformanceStatement): string[] {
  const listener = statement.acceptance[0]?.listener ?? null;
  return [
    '## 6 Security',
    '',
    'Security profile: the Basic TLS Secure Transport Connection Profile (PS3.15 B.1) for peers configured with TLS; see Network Interfaces. endocap proposes no user identity negotiation.',
    '',
    listener === null
      ? 'endocap accepts no associations with this profile.'
      : `Association acceptance is limited to the allowed peers of the Storage Commitment listener (${listener.allowedPeers.length} in this profile), matched by calling AE title and source IP address.`,
    '',
    'Patient data is never written to logs, telemetry or error messages.',
    '',
  ];
}

function createdObjects(statement: ConformanceStatement): string[] {
  const body = statement.createdObjects.map((object) => [object.label, uidCell(object.sopClass), object.transferSyntaxes.map(uidCell).join('<br>')]);
  return [
    '## 7 Annexes',
    '',
    '### 7.1 Created SOP Instances',
    '',
    ...table(['Object', 'SOP Class', 'Transfer Syntaxes'], body),
    '',
    'Clips carry the H.264 stream in one fragment after an empty Basic Offset Table, with Photometric Interpretation YBR_PARTIAL_420. The transfer syntax follows the stream\'s level: High Profile / Level 4.1 up to level 4.1, High Profile / Level 4.2 For 2D Video for level 4.2. Stills are baseline JPEG with Photometric Interpretation YBR_FULL_422.',
    '',
  ];
}

/** Returns the statement as a Markdown document ending with a newline. */
export function renderConformanceMarkdown(statement: ConformanceStatement): string {
  const lines = [
    `# endocap ${statement.product.version} DICOM Conformance Statement`,
    '',
    '<!-- Generated by `endocap conformance`; regenerate with `npm run conformance:docs` rather than editing. -->',
    '',
    ...overview(statement),
    ...introduction(statement),
    ...implementationModel(statement),
    ...aeSpecification(statement),
    ...networkInterfaces(statement),
    ...configuration(statement),
    ...extensions(),
    ...webServices(statement),
    ...characterSets(statement),
    ...security(statement),
    ...createdObjects(statement),
  ];
  while (lines.at(-1) === '') lines.pop();
  return `${lines.join('\n')}\n`;
}
