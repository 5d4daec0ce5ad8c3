import dimse from 'dcmjs-dimse';

/**
 * The parts of dcmjs-dimse 0.3.3 that the Storage Commitment listener uses:
 * the acceptor side of an association and the N-EVENT-REPORT messages.
 */

export const { NEventReportResponse } = dimse.responses;
export const { PresentationContextResult, RejectReason, RejectResult, RejectSource } = dimse.constants;

/** Process-wide settings the library's acceptor puts into every A-ASSOCIATE-AC: implementation UID, version name, maximum PDU length. */
export const LibraryImplementation = dimse.Implementation;

/** Base class of an association acceptor: it reads and answers PDUs on a socket it is given. */
export const ScpBase = dimse.Scp;

export type AssociationInstance = InstanceType<typeof dimse.association.Association>;
export type NEventReportRequestInstance = InstanceType<typeof dimse.requests.NEventReportRequest>;
export type NEventReportResponseInstance = InstanceType<typeof NEventReportResponse>;
