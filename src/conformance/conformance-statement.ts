import { sopClassName } from '../dicom/sop-class-names.js';
import { UTF8_CHARACTER_SET } from '../dicom/values.js';
import { defaultIdleTimeoutMs, defaultMaxAssociations, listenerMaxPduLength } from '../pacs/commitment-listener.js';
import {
  COMMITMENT_LISTENER_CONTEXTS,
  IMPLEMENTATION_CLASS_UID,
  IMPLEMENTATION_VERSION_NAME,
  MAX_PRESENTATION_CONTEXTS,
  MAX_RECEIVE_PDU_LENGTH,
  MPPS_CONTEXT,
  STORAGE_COMMITMENT_CONTEXT,
  STORED_OBJECT_TYPES,
  VERIFICATION_CONTEXT,
  WORKLIST_FIND_CONTEXT,
  storageContexts,
  uidName,
} from '../pacs/service-tables.js';
import { MAX_SEND_PDU_LENGTH, MIN_PEER_PDU_LENGTH } from '../pacs/scu-association.js';
import { dicomDestinations, type DestinationConfig, type Profile } from '../profile/schema.js';
import { SOFTWARE_VERSION } from '../version.js';
import { supportedCharacterSets } from '../worklist/character-sets.js';

/**
 * The data of a DICOM Conformance Statement (PS3.2) for one profile, built
 * from the tables the association code negotiates with (pacs/service-tables.ts)
 * and from the profile's peers. `endocap conformance --format json` prints it
 * as it is; conformance-markdown.ts renders it in the structure of PS3.2 Annex A.
 * It contains configuration only, never patient data.
 */

/** A UID with its PS3.6 name. */
export interface NamedUid {
  uid: string;
  name: string;
}

/** One row of a proposed or accepted presentation context table. */
export interface PresentationContextRow {
  abstractSyntax: NamedUid;
  /** In order of preference. */
  transferSyntaxes: NamedUid[];
  /** Role of endocap for this SOP class. */
  role: 'SCU';
  extendedNegotiation: 'None';
}

/** A DICOM peer endocap opens associations to. */
export interface PeerEntry {
  /** The destination's name, or `worklist` or `mpps`. */
  name: string;
  host: string;
  port: number;
  calledAeTitle: string;
  callingAeTitle: string;
  connectTimeoutMs: number;
  associationTimeoutMs: number;
  requestTimeoutMs: number;
  /** Null for plain TCP. */
  tls: TlsEntry | null;
}

export interface TlsEntry {
  verifiesPeerCertificate: boolean;
  clientCertificate: boolean;
  /** Name the peer certificate must carry. */
  serverName: string;
}

export type ActivityId = 'store' | 'commitment' | 'worklist' | 'mpps' | 'verify';

/** One real-world activity for which endocap initiates associations. */
export interface InitiationActivity {
  id: ActivityId;
  title: string;
  /** False when the profile configures no peer for it; the contexts are then the ones it would propose. */
  configured: boolean;
  peers: PeerEntry[];
  presentationContexts: PresentationContextRow[];
}

export interface CommitmentListenerEntry {
  host: string;
  port: number;
  aeTitle: string;
  allowedPeers: Array<{ aeTitle: string; host: string }>;
}

/** Associations that peers open to endocap: only the Storage Commitment listener. */
export interface AcceptanceActivity {
  id: 'commitment-results';
  title: string;
  configured: boolean;
  /** Null when the profile has no commitmentListener section. */
  listener: CommitmentListenerEntry | null;
  maxAssociations: number;
  idleTimeoutMs: number;
  /** Upper limit of the maximum PDU length announced in the A-ASSOCIATE-AC; the requester's own maximum when smaller. */
  maxPduLength: number;
  presentationContexts: PresentationContextRow[];
}

export interface NetworkServiceRow {
  sopClass: NamedUid;
  user: boolean;
  provider: boolean;
  /** True when the profile configures a peer for this service. */
  configured: boolean;
}

export interface StowRsEntry {
  name: string;
  url: string;
  authentication: string;
  tls: boolean;
}

export interface ConformanceStatement {
  product: { name: 'endocap'; version: string };
  implementation: {
    classUid: string;
    versionName: string;
    maxReceivePduLength: number;
    /** Largest PDU sent, whatever the peer announces. */
    maxSendPduLength: number;
    /** Smallest maximum PDU length of a peer that endocap sends to. */
    minPeerPduLength: number;
    maxPresentationContexts: number;
  };
  stationAeTitle: string;
  networkServices: NetworkServiceRow[];
  /** Objects endocap creates, with the transfer syntaxes it writes them in. */
  createdObjects: Array<{ label: string; sopClass: NamedUid; transferSyntaxes: NamedUid[] }>;
  initiation: InitiationActivity[];
  acceptance: AcceptanceActivity[];
  characterSets: {
    /** Defined Terms of SpecificCharacterSet that worklist responses are decoded in. */
    decoded: string[];
    /** Assumed when a worklist response declares none; null means UTF-8 if valid, else Latin-1. */
    assumedWhenUndeclared: string | null;
    /** Declared in objects and MPPS messages with non-ASCII text; ASCII-only data sets declare none. */
    written: string;
  };
  stowRs: StowRsEntry[];
}

function named(uid: string): NamedUid {
  return { uid, name: uidName(uid) ?? sopClassName(uid) };
}

function rows(contexts: ReadonlyArray<{ abstractSyntaxUid: string; transferSyntaxUids: readonly string[] }>): PresentationContextRow[] {
  return contexts.map((context) => ({
    abstractSyntax: named(context.abstractSyntaxUid),
    transferSyntaxes: context.transferSyntaxUids.map(named),
    role: 'SCU',
    extendedNegotiation: 'None',
  }));
}

/** Storage contexts of every object type endocap writes, one per SOP class and transfer syntax, as `planContexts` proposes them. */
function storageRows(): PresentationContextRow[] {
  const contexts = STORED_OBJECT_TYPES.flatMap((type) => type.transferSyntaxUids.flatMap((transferSyntaxUid) => storageContexts({ sopClassUid: type.sopClassUid, transferSyntaxUid })));
  return rows(contexts);
}

function tlsEntry(tls: DestinationConfig['tls'], host: string): TlsEntry | null {
  if (tls === undefined || !tls.enabled) return null;
  return { verifiesPeerCertificate: tls.rejectUnauthorized, clientCertificate: tls.certFile !== undefined, serverName: tls.serverName ?? host };
}

type ServiceConnection = Pick<DestinationConfig, 'host' | 'port' | 'calledAeTitle' | 'callingAeTitle' | 'connectTimeoutMs' | 'associationTimeoutMs' | 'requestTimeoutMs' | 'tls'>;

function peerEntry(name: string, connection: ServiceConnection, stationAeTitle: string): PeerEntry {
  return {
    name,
    host: connection.host,
    port: connection.port,
    calledAeTitle: connection.calledAeTitle,
    callingAeTitle: connection.callingAeTitle ?? stationAeTitle,
    connectTimeoutMs: connection.connectTimeoutMs,
    associationTimeoutMs: connection.associationTimeoutMs,
    requestTimeoutMs: connection.requestTimeoutMs,
    tls: tlsEntry(connection.tls, connection.host),
  };
}

function initiationActivities(profile: Profile): InitiationActivity[] {
  const station = profile.station.aeTitle;
  const destinations = dicomDestinations(profile).map((destination) => ({ destination, peer: peerEntry(destination.name, destination, station) }));
  const committing = destinations.filter(({ destination }) => destination.storageCommitment?.enabled === true).map(({ peer }) => peer);
  const worklist = profile.worklist === undefined ? [] : [peerEntry('worklist', profile.worklist, station)];
  const mpps = profile.mpps === undefined ? [] : [peerEntry('mpps', profile.mpps, station)];
  const storing = destinations.map(({ peer }) => peer);
  const activity = (id: ActivityId, title: string, peers: PeerEntry[], presentationContexts: PresentationContextRow[]): InitiationActivity => ({
    id,
    title,
    configured: peers.length > 0,
    peers,
    presentationContexts,
  });
  return [
    activity('store', 'Send Objects', storing, storageRows()),
    activity('commitment', 'Request Storage Commitment', committing, rows([STORAGE_COMMITMENT_CONTEXT])),
    activity('worklist', 'Query Modality Worklist', worklist, rows([WORKLIST_FIND_CONTEXT])),
    activity('mpps', 'Report Performed Procedure Steps', mpps, rows([MPPS_CONTEXT])),
    // `endocap echo` checks every DICOM destination and the worklist server, not the MPPS server.
    activity('verify', 'Verify Connectivity', [...storing, ...worklist], rows([VERIFICATION_CONTEXT])),
  ];
}

function acceptanceActivities(profile: Profile): AcceptanceActivity[] {
  const config = profile.commitmentListener;
  const listener: CommitmentListenerEntry | null =
    config === undefined
      ? null
      : { host: config.host, port: config.port, aeTitle: config.aeTitle ?? profile.station.aeTitle, allowedPeers: config.allowedPeers.map(({ aeTitle, host }) => ({ aeTitle, host })) };
  return [
    {
      id: 'commitment-results',
      title: 'Receive Storage Commitment Results',
      configured: listener !== null,
      listener,
      maxAssociations: defaultMaxAssociations,
      idleTimeoutMs: defaultIdleTimeoutMs,
      maxPduLength: listenerMaxPduLength(),
      presentationContexts: rows(COMMITMENT_LISTENER_CONTEXTS),
    },
  ];
}

/** Lists one row per SOP class of any activity, in the order the activities first use them. */
function networkServices(initiation: InitiationActivity[], acceptance: AcceptanceActivity[]): NetworkServiceRow[] {
  const services = new Map<string, NetworkServiceRow>();
  for (const activity of [...initiation, ...acceptance]) {
    for (const context of activity.presentationContexts) {
      const known = services.get(context.abstractSyntax.uid);
      if (known) known.configured ||= activity.configured;
      else services.set(context.abstractSyntax.uid, { sopClass: context.abstractSyntax, user: true, provider: false, configured: activity.configured });
    }
  }
  return [...services.values()];
}

function stowRsEntries(profile: Profile): StowRsEntry[] {
  return profile.destinations.flatMap((destination) => {
    if (destination.kind !== 'stow-rs') return [];
    return [{ name: destination.name, url: destination.url, authentication: destination.auth?.kind ?? 'none', tls: destination.url.startsWith('https:') }];
  });
}

/** Builds the conformance statement of a profile. */
export function buildConformanceStatement(profile: Profile): ConformanceStatement {
  const initiation = initiationActivities(profile);
  const acceptance = acceptanceActivities(profile);
  return {
    product: { name: 'endocap', version: SOFTWARE_VERSION },
    implementation: {
      classUid: IMPLEMENTATION_CLASS_UID,
      versionName: IMPLEMENTATION_VERSION_NAME,
      maxReceivePduLength: MAX_RECEIVE_PDU_LENGTH,
      maxSendPduLength: MAX_SEND_PDU_LENGTH,
      minPeerPduLength: MIN_PEER_PDU_LENGTH,
      maxPresentationContexts: MAX_PRESENTATION_CONTEXTS,
    },
    stationAeTitle: profile.station.aeTitle,
    networkServices: networkServices(initiation, acceptance),
    createdObjects: STORED_OBJECT_TYPES.map((type) => ({ label: type.label, sopClass: named(type.sopClassUid), transferSyntaxes: type.transferSyntaxUids.map(named) })),
    initiation,
    acceptance,
    characterSets: {
      decoded: supportedCharacterSets(),
      assumedWhenUndeclared: profile.worklist?.assumedCharacterSet ?? null,
      written: UTF8_CHARACTER_SET,
    },
    stowRs: stowRsEntries(profile),
  };
}
