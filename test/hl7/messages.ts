import { msh } from './peer.js';

/** Builds a segment from its fields by number, so that positions are explicit: segment('PID', { 3: 'X' }) is PID|||X. */
export function segment(name: string, fields: Record<number, string>): string {
  const last = Math.max(0, ...Object.keys(fields).map(Number));
  const values = Array.from({ length: last }, (_, index) => fields[index + 1] ?? '');
  return [name, ...values].join('|');
}

export const today = (() => {
  const now = new Date();
  return `${now.getFullYear()}${String(now.getMonth() + 1).padStart(2, '0')}${String(now.getDate()).padStart(2, '0')}`;
})();

/**
 * ORM^O01 in ISO 8859-1 with two identifiers in PID-3 (the second one is
 * HOSP-A's), a hex escape in the given name and a subcomponent escape in the
 * procedure text.
 */
export const latinOrder = {
  segments: (controlId = 'LAT0001') => [
    msh('ORM^O01', controlId, '8859/1'),
    segment('PID', { 1: '1', 3: 'OTHERID77^^^OTHERHOSP^PI~PIDLAT551^^^HOSP-A&1.2.3.4&ISO^MR', 5: 'Müller-Lüdenscheidt^Jos\\XE9\\^Çedric^Jr^Dr', 7: '19480305', 8: 'M' }),
    segment('PV1', { 1: '1', 2: 'O', 8: '0815^Weiß^Käthe', 19: 'VISIT551' }),
    segment('ORC', { 1: 'NW', 2: 'PLC-LAT-1', 3: 'FIL-LAT-1', 5: 'SC', 12: '0816^Groß^Jörg' }),
    segment('OBR', { 1: '1', 2: 'PLC-LAT-1', 3: 'FIL-LAT-1', 4: 'COLO^Koloskopie \\T\\ Polypektomie^L', 18: 'ACCLAT551', 19: 'RP551', 20: 'SPS551', 24: 'ES', 27: `^^^${today}1030` }),
    segment('ZDS', { 1: '1.2.826.0.1.3680043.10.1437.77.1^ENDOCAP^Application^DICOM' }),
  ],
  encoding: 'latin-1' as const,
  patientName: 'Müller-Lüdenscheidt^José^Çedric^Dr^Jr',
  patientId: 'PIDLAT551',
  issuer: 'HOSP-A',
  accessionNumber: 'ACCLAT551',
  birthDate: '19480305',
  description: 'Koloskopie & Polypektomie',
  studyInstanceUid: '1.2.826.0.1.3680043.10.1437.77.1',
};

/** OMI^O23 in UTF-8 with text outside Latin-1 and an IPC segment. */
export const utf8Order = {
  segments: (controlId = 'UTF0001') => [
    msh('OMI^O23^OMI_O23', controlId, 'UNICODE UTF-8'),
    segment('PID', { 1: '1', 3: 'PIDUTF552^^^HOSP-A^MR', 5: 'Ærøskøbing-Šťastná^Zoë^Ŝ', 7: '19570721', 8: 'F' }),
    segment('PV1', { 1: '1', 2: 'O' }),
    segment('ORC', { 1: 'NW', 2: 'PLC-UTF-1', 3: 'FIL-UTF-1', 5: 'SC' }),
    segment('TQ1', { 1: '1', 7: `${today}1115` }),
    segment('OBR', { 1: '1', 2: 'PLC-UTF-1', 3: 'FIL-UTF-1', 4: 'GASTRO^Gastroskopie \\T\\ Biopsie ñ — 胃カメラ^L' }),
    segment('IPC', { 1: 'ACCUTF552', 2: 'RP552', 3: '1.2.826.0.1.3680043.10.1437.77.2', 4: 'SPS552', 5: 'ES', 6: 'PROT1^Standard^L', 7: 'TOWER-2', 8: 'ROOM 3', 9: 'ENDOCAP_TEST' }),
  ],
  encoding: 'utf-8' as const,
  patientName: 'Ærøskøbing-Šťastná^Zoë^Ŝ',
  patientId: 'PIDUTF552',
  issuer: 'HOSP-A',
  accessionNumber: 'ACCUTF552',
  birthDate: '19570721',
  description: 'Gastroskopie & Biopsie ñ — 胃カメラ',
  studyInstanceUid: '1.2.826.0.1.3680043.10.1437.77.2',
};
