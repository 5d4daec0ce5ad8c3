import { dcmjs } from './dcmjs.js';
import { IMPLEMENTATION_CLASS_UID } from './endoscopic-common.js';

/**
 * Wraps an encoded data set, as received in a C-STORE, into a Part 10 file
 * (PS3.10 7.1) without parsing it: preamble, File Meta Information written by
 * dcmjs, then the data set bytes unchanged. Re-encoding the data set with
 * dcmjs would split encapsulated pixel data into new fragments.
 */
export function part10FromDataset(sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string, dataset: Buffer): Buffer {
  const ui = (value: string): { vr: string; Value: string[] } => ({ vr: 'UI', Value: [value] });
  const meta = {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
    '00020002': ui(sopClassUid),
    '00020003': ui(sopInstanceUid),
    '00020010': ui(transferSyntaxUid),
    '00020012': ui(IMPLEMENTATION_CLASS_UID),
  };
  const dicomDict = new dcmjs.data.DicomDict(meta);
  dicomDict.dict = {};
  return Buffer.concat([Buffer.from(dicomDict.write()), dataset]);
}
