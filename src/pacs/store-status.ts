/**
 * Classification of C-STORE response statuses (PS3.4 B.2.3 and PS3.7 C).
 * Reasons name the status only: a response's Error Comment is free text from
 * the peer and may quote patient data, so it is never copied.
 */

export type StoreOutcome = 'stored' | 'warning' | 'transient' | 'permanent';

export interface StatusClassification {
  outcome: StoreOutcome;
  reason: string;
}

const warningMeanings: Record<number, string> = {
  0xb000: 'coercion of data elements',
  0xb006: 'elements discarded',
  0xb007: 'data set does not match SOP class',
};

const failureMeanings: Record<number, string> = {
  0x0110: 'processing failure',
  0x0111: 'duplicate SOP instance',
  0x0117: 'invalid SOP instance',
  0x0122: 'SOP class not supported',
  0x0124: 'not authorized',
  0x0210: 'duplicate invocation',
  0x0211: 'unrecognized operation',
  0x0212: 'mistyped argument',
  0x0213: 'resource limitation',
};

/** Formats a status as four upper-case hex digits, such as 0xA700. */
export function formatStatus(status: number): string {
  return `0x${status.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Maps a final C-STORE status to an outcome. Success is stored, and warnings
 * (0001, 0107, 0116, Bxxx) and a duplicate SOP instance (0111) count as
 * stored with a warning. Out of resources (A7xx) and resource limitation
 * (0213) are worth retrying. Every other failure (A9xx, Cxxx, other 01xx and
 * 02xx, unknown codes) is permanent.
 */
export function classifyStoreStatus(status: number): StatusClassification {
  const code = formatStatus(status);
  if (status === 0x0000) return { outcome: 'stored', reason: 'stored' };
  if ((status & 0xf000) === 0xb000 || status === 0x0001 || status === 0x0107 || status === 0x0116) {
    const meaning = warningMeanings[status] ?? 'warning';
    return { outcome: 'warning', reason: `stored with warning ${code} (${meaning})` };
  }
  if ((status & 0xff00) === 0xa700) {
    return { outcome: 'transient', reason: `peer out of resources (status ${code})` };
  }
  if (status === 0x0213) {
    return { outcome: 'transient', reason: `peer resource limitation (status ${code})` };
  }
  // endocap never reuses a SOP Instance UID, so a duplicate means an earlier
  // attempt already stored this object (for example before a restart).
  if (status === 0x0111) {
    return { outcome: 'warning', reason: `already stored: duplicate SOP instance (status ${code})` };
  }
  if ((status & 0xff00) === 0xa900) {
    return { outcome: 'permanent', reason: `peer rejected the object: data set does not match SOP class (status ${code})` };
  }
  if ((status & 0xf000) === 0xc000) {
    return { outcome: 'permanent', reason: `peer rejected the object: cannot understand (status ${code})` };
  }
  const meaning = failureMeanings[status] ?? 'unknown status';
  return { outcome: 'permanent', reason: `peer rejected the object: ${meaning} (status ${code})` };
}
