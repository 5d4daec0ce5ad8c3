import { VIDEO_ENDOSCOPIC_IMAGE_STORAGE } from '../dicom/video-endoscopic.js';
import {
  MPEG4_BD_COMPATIBLE_HIGH_PROFILE_LEVEL_41,
  MPEG4_HIGH_PROFILE_LEVEL_41,
  MPEG4_HIGH_PROFILE_LEVEL_42_2D,
  WRITTEN_H264_TRANSFER_SYNTAXES,
} from '../dicom/video-transfer-syntax.js';
import { IMPLEMENTATION_CLASS_UID, JPEG_BASELINE_TRANSFER_SYNTAX, VL_ENDOSCOPIC_IMAGE_STORAGE } from '../dicom/vl-endoscopic.js';
import { SOFTWARE_VERSION } from '../version.js';
import type { ProposedContext } from './association-types.js';

/**
 * The DICOM services endocap negotiates, in one place: SOP classes, transfer
 * syntaxes, and the presentation contexts each activity proposes or accepts.
 * The association code builds its A-ASSOCIATE-RQ and -AC from these tables,
 * and `endocap conformance` prints the same tables, so that the conformance
 * statement cannot differ from what goes on the wire.
 */

export const SopClassUid = {
  /** Verification SOP Class (PS3.4 A.4). */
  Verification: '1.2.840.10008.1.1',
  /** Storage Commitment Push Model SOP Class (PS3.4 J.3). */
  StorageCommitmentPushModel: '1.2.840.10008.1.20.1',
  /** Modality Worklist Information Model - FIND SOP Class (PS3.4 K.6.1). */
  ModalityWorklistFind: '1.2.840.10008.5.1.4.31',
  /** Modality Performed Procedure Step SOP Class (PS3.4 F.7.3). */
  ModalityPerformedProcedureStep: '1.2.840.10008.3.1.2.3.3',
  /** VL Endoscopic Image Storage (PS3.4 B.5): stills. */
  VlEndoscopicImageStorage: VL_ENDOSCOPIC_IMAGE_STORAGE,
  /** Video Endoscopic Image Storage (PS3.4 B.5): clips. */
  VideoEndoscopicImageStorage: VIDEO_ENDOSCOPIC_IMAGE_STORAGE,
} as const;

export const TransferSyntaxUid = {
  ImplicitVrLittleEndian: '1.2.840.10008.1.2',
  ExplicitVrLittleEndian: '1.2.840.10008.1.2.1',
  ExplicitVrBigEndian: '1.2.840.10008.1.2.2',
  JpegBaseline: JPEG_BASELINE_TRANSFER_SYNTAX,
  Mpeg4HighProfileLevel41: MPEG4_HIGH_PROFILE_LEVEL_41,
  Mpeg4BdCompatibleHighProfileLevel41: MPEG4_BD_COMPATIBLE_HIGH_PROFILE_LEVEL_41,
  Mpeg4HighProfileLevel42For2dVideo: MPEG4_HIGH_PROFILE_LEVEL_42_2D,
} as const;

/** Names of the UIDs above, as PS3.6 Annex A lists them. */
const uidNames: Record<string, string> = {
  [SopClassUid.Verification]: 'Verification SOP Class',
  [SopClassUid.StorageCommitmentPushModel]: 'Storage Commitment Push Model SOP Class',
  [SopClassUid.ModalityWorklistFind]: 'Modality Worklist Information Model - FIND',
  [SopClassUid.ModalityPerformedProcedureStep]: 'Modality Performed Procedure Step SOP Class',
  [SopClassUid.VlEndoscopicImageStorage]: 'VL Endoscopic Image Storage',
  [SopClassUid.VideoEndoscopicImageStorage]: 'Video Endoscopic Image Storage',
  [TransferSyntaxUid.ImplicitVrLittleEndian]: 'Implicit VR Little Endian',
  [TransferSyntaxUid.ExplicitVrLittleEndian]: 'Explicit VR Little Endian',
  [TransferSyntaxUid.ExplicitVrBigEndian]: 'Explicit VR Big Endian',
  [TransferSyntaxUid.JpegBaseline]: 'JPEG Baseline (Process 1)',
  [TransferSyntaxUid.Mpeg4HighProfileLevel41]: 'MPEG-4 AVC/H.264 High Profile / Level 4.1',
  [TransferSyntaxUid.Mpeg4BdCompatibleHighProfileLevel41]: 'MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1',
  [TransferSyntaxUid.Mpeg4HighProfileLevel42For2dVideo]: 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video',
};

/** Returns the PS3.6 name of a SOP class or transfer syntax in these tables, or undefined. */
export function uidName(uid: string): string | undefined {
  return uidNames[uid];
}

/**
 * Explicit VR Little Endian, then Implicit VR Little Endian: the transfer
 * syntaxes of every context other than storage, in order of preference, and
 * the fallback proposed for uncompressed objects.
 */
export const LITTLE_ENDIAN_TRANSFER_SYNTAXES: readonly string[] = [TransferSyntaxUid.ExplicitVrLittleEndian, TransferSyntaxUid.ImplicitVrLittleEndian];

/** Transfer syntaxes of uncompressed data, between which a data set can be converted before sending. */
export const UNCOMPRESSED_TRANSFER_SYNTAXES: ReadonlySet<string> = new Set([
  TransferSyntaxUid.ImplicitVrLittleEndian,
  TransferSyntaxUid.ExplicitVrLittleEndian,
  TransferSyntaxUid.ExplicitVrBigEndian,
]);

/** Implementation Class UID of the A-ASSOCIATE-RQ and -AC (PS3.7 D.3.3.2); the same UID is written into every file's meta information. */
export { IMPLEMENTATION_CLASS_UID };

/** Implementation Version Name of the A-ASSOCIATE-RQ and -AC: at most 16 characters (PS3.7 D.3.3.2.2). */
export const IMPLEMENTATION_VERSION_NAME = `ENDOCAP_${SOFTWARE_VERSION}`.slice(0, 16);

/** Largest PDU this box receives as association requester, announced in every A-ASSOCIATE-RQ (PS3.8 D.1). */
export const MAX_RECEIVE_PDU_LENGTH = 65_536;

/** Presentation contexts in one association: their IDs are odd numbers from 1 to 255 (PS3.8 9.3.2.2). */
export const MAX_PRESENTATION_CONTEXTS = 128;

/** A kind of object endocap writes and stores: its SOP class and every transfer syntax it can be written in. */
export interface StoredObjectType {
  label: string;
  sopClassUid: string;
  transferSyntaxUids: readonly string[];
}

/**
 * Objects endocap writes: stills as VL Endoscopic Image in JPEG Baseline
 * (dicom/vl-endoscopic.ts), clips as Video Endoscopic Image in the H.264
 * transfer syntaxes that the clip pipeline chooses (dicom/video-transfer-syntax.ts).
 */
export const STORED_OBJECT_TYPES: readonly StoredObjectType[] = [
  { label: 'still', sopClassUid: SopClassUid.VlEndoscopicImageStorage, transferSyntaxUids: [TransferSyntaxUid.JpegBaseline] },
  { label: 'clip', sopClassUid: SopClassUid.VideoEndoscopicImageStorage, transferSyntaxUids: WRITTEN_H264_TRANSFER_SYNTAXES },
];

/**
 * Presentation contexts proposed to store one object: its SOP class in its
 * own transfer syntax and, when that is uncompressed, a second context with
 * both little endian syntaxes. Compressed objects get no fallback: they are
 * sent as they are or not at all.
 */
export function storageContexts(object: { sopClassUid: string; transferSyntaxUid: string }): ProposedContext[] {
  const contexts: ProposedContext[] = [{ abstractSyntaxUid: object.sopClassUid, transferSyntaxUids: [object.transferSyntaxUid] }];
  if (UNCOMPRESSED_TRANSFER_SYNTAXES.has(object.transferSyntaxUid)) {
    contexts.push({ abstractSyntaxUid: object.sopClassUid, transferSyntaxUids: [...LITTLE_ENDIAN_TRANSFER_SYNTAXES] });
  }
  return contexts;
}

function littleEndianContext(abstractSyntaxUid: string): ProposedContext {
  return { abstractSyntaxUid, transferSyntaxUids: [...LITTLE_ENDIAN_TRANSFER_SYNTAXES] };
}

/** C-ECHO to a destination or the worklist server (`endocap echo`). */
export const VERIFICATION_CONTEXT: ProposedContext = littleEndianContext(SopClassUid.Verification);

/** Modality Worklist C-FIND. */
export const WORKLIST_FIND_CONTEXT: ProposedContext = littleEndianContext(SopClassUid.ModalityWorklistFind);

/** MPPS N-CREATE and N-SET. */
export const MPPS_CONTEXT: ProposedContext = littleEndianContext(SopClassUid.ModalityPerformedProcedureStep);

/** Storage Commitment N-ACTION; the PACS may send the N-EVENT-REPORT on the same association. */
export const STORAGE_COMMITMENT_CONTEXT: ProposedContext = littleEndianContext(SopClassUid.StorageCommitmentPushModel);

/**
 * Presentation contexts the Storage Commitment listener accepts when a PACS
 * opens an association to deliver results. Every other abstract syntax is
 * rejected with reason 3, and a context of an accepted abstract syntax
 * without any of these transfer syntaxes with reason 4 (PS3.8 9.3.3.2). The
 * accepted transfer syntax is the first one in the requester's list that is
 * also in this one.
 */
export const COMMITMENT_LISTENER_CONTEXTS: ReadonlyArray<{ abstractSyntaxUid: string; transferSyntaxUids: readonly string[] }> = [
  { abstractSyntaxUid: SopClassUid.StorageCommitmentPushModel, transferSyntaxUids: LITTLE_ENDIAN_TRANSFER_SYNTAXES },
];
