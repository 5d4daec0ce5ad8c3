import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { buildVlEndoscopicImage } from '../../src/dicom/vl-endoscopic.js';
import { DatasetFormatError, readDataset } from '../../src/worklist/dataset-reader.js';
import { encodeDataset, type DatasetElement } from '../../src/worklist/dataset-writer.js';
import { examObjectAttributes, spliceElements } from '../../src/worklist/object-attributes.js';
import { Tag } from '../../src/worklist/tags.js';
import { blackWhitePattern, encodeBaselineJpeg, makeTempDir, run, sampleInput } from '../dicom/fixtures/dicom.js';
import { PYTHON, validateIod } from '../helpers/dicom-tools.js';
import { entry } from './exam-fixtures.js';

const elements: DatasetElement[] = [
  { tag: Tag.PatientName, vr: 'PN', value: 'Yamada^Tarou=山田^太郎' },
  { tag: Tag.SpecificCharacterSet, vr: 'CS', value: 'ISO_IR 192' },
  { tag: Tag.StudyInstanceUid, vr: 'UI', value: '1.2.3.4' },
  {
    tag: Tag.ScheduledProcedureStepSequence,
    vr: 'SQ',
    items: [
      [
        { tag: Tag.ScheduledProcedureStepDescription, vr: 'LO', value: 'Gastroskopie ñ' },
        { tag: Tag.ScheduledProtocolCodeSequence, vr: 'SQ', items: [] },
      ],
      [{ tag: Tag.ScheduledProcedureStepId, vr: 'SH', value: 'SPS2' }],
    ],
  },
];

const readWithPydicom = [
  'import json, sys',
  'from io import BytesIO',
  'from pydicom.filereader import read_dataset',
  "ds = read_dataset(BytesIO(open(sys.argv[1], 'rb').read()), is_implicit_VR=sys.argv[2] == 'implicit', is_little_endian=True)",
  'ds.decode()',
  'sps = ds.ScheduledProcedureStepSequence',
  "print(json.dumps({'name': str(ds.PatientName), 'uid': ds.StudyInstanceUID, 'description': sps[0].ScheduledProcedureStepDescription, 'codes': len(sps[0].ScheduledProtocolCodeSequence), 'id': sps[1].ScheduledProcedureStepID}, ensure_ascii=False))",
].join('\n');

t.test('writer output decodes in pydicom', async (t) => {
  const { dir, remove } = await makeTempDir('codec');
  t.teardown(remove);
  for (const explicitVr of [true, false]) {
    const file = path.join(dir, `dataset-${explicitVr}.bin`);
    await writeFile(file, encodeDataset(elements, { explicitVr }));
    const { stdout } = await run(PYTHON, ['-c', readWithPydicom, file, explicitVr ? 'explicit' : 'implicit']);
    t.same(JSON.parse(stdout), { name: 'Yamada^Tarou=山田^太郎', uid: '1.2.3.4', description: 'Gastroskopie ñ', codes: 0, id: 'SPS2' }, explicitVr ? 'explicit VR' : 'implicit VR');
  }
});

t.test('reader reads what the writer wrote', async (t) => {
  for (const explicitVr of [true, false]) {
    const read = readDataset(encodeDataset(elements, { explicitVr }), { explicitVr });
    t.same(read.map((element) => element.tag), [Tag.SpecificCharacterSet, Tag.PatientName, Tag.StudyInstanceUid, Tag.ScheduledProcedureStepSequence], 'sorted by tag');
    const sequence = read.find((element) => element.tag === Tag.ScheduledProcedureStepSequence);
    t.equal(sequence?.vr, 'SQ');
    t.equal(sequence?.items?.length, 2);
    t.equal(sequence?.items?.[0]?.[0]?.value.toString('utf8').trim(), 'Gastroskopie ñ');
    t.equal(read.find((element) => element.tag === Tag.StudyInstanceUid)?.value.toString('latin1'), '1.2.3.4\0', 'UI padded with NUL');
  }
  t.throws(() => encodeDataset([...elements, { tag: Tag.PatientName, vr: 'PN', value: 'x' }], { explicitVr: true }), /\(0010,0010\) given twice/);
});

t.test('reader rejects malformed data sets', async (t) => {
  const good = encodeDataset(elements, { explicitVr: true });
  t.throws(() => readDataset(good.subarray(0, good.length - 3), { explicitVr: true }), DatasetFormatError);
  t.throws(() => readDataset(good.subarray(0, 6), { explicitVr: true }), DatasetFormatError);
  const nested: DatasetElement = { tag: Tag.ScheduledProcedureStepSequence, vr: 'SQ', items: [] };
  let deep: DatasetElement = nested;
  for (let level = 0; level < 12; level += 1) deep = { tag: Tag.ScheduledProcedureStepSequence, vr: 'SQ', items: [[deep]] };
  t.throws(() => readDataset(encodeDataset([deep], { explicitVr: true }), { explicitVr: true }), /nested deeper than 8 levels/);
  const unended = Buffer.concat([Buffer.from([0x40, 0x00, 0x00, 0x01, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff])]);
  t.throws(() => readDataset(unended, { explicitVr: true }), /not ended/);
});

t.test('exam attributes spliced into a VL image stay valid', async (t) => {
  const { dir, remove } = await makeTempDir('splice');
  t.teardown(remove);
  const jpeg = await encodeBaselineJpeg(dir, 64, 48, blackWhitePattern);
  const original = buildVlEndoscopicImage(sampleInput(jpeg, 64, 48));
  const worklistEntry = entry('ACC1', {
    patientName: 'Ærøskøbing^Jürgen=山田^太郎',
    issuerOfPatientId: 'HOSP',
    referringPhysicianName: 'Größe^Käthe',
    step: { ...entry('ACC1').step, description: 'Koloskopie für Übung', protocolCodes: [{ codeValue: 'P1', codingSchemeDesignator: '99LOCAL', codingSchemeVersion: '', codeMeaning: 'Protokoll ü' }] },
  });
  const spliced = spliceElements(original, examObjectAttributes({ entry: worklistEntry, studyInstanceUid: '1.2.826.0.1.3680043.10.999.5', seriesDescription: 'Endoscopy stills', mpps: { sopInstanceUid: '1.2.826.0.1.3680043.10.999.6', performedStepId: 'E20261204-101010', startedAt: new Date() } }));
  const file = path.join(dir, 'spliced.dcm');
  await writeFile(file, spliced);
  t.same((await validateIod(file)).errors, []);

  const script = new URL('./read_object.py', import.meta.url).pathname;
  const object = JSON.parse((await run(PYTHON, [script, file])).stdout) as Record<string, unknown>;
  t.match(object, {
    SpecificCharacterSet: 'ISO_IR 192',
    PatientName: 'Ærøskøbing^Jürgen=山田^太郎',
    PatientNameHex: Buffer.from('Ærøskøbing^Jürgen=山田^太郎', 'utf8').toString('hex'),
    IssuerOfPatientID: 'HOSP',
    AccessionNumber: 'ACC1',
    ReferringPhysicianName: 'Größe^Käthe',
    StudyDescription: 'Colonoscopy',
    ReferencedMpps: '1.2.826.0.1.3680043.10.999.6',
    Request: { ScheduledProcedureStepDescription: 'Koloskopie für Übung', AccessionNumber: 'ACC1', RequestedProcedureID: 'RPACC1' },
  });
  // The pixel data is untouched: the JPEG is the last bytes of both files, before the sequence delimiter.
  t.ok(spliced.includes(jpeg), 'JPEG bytes unchanged');
  t.throws(() => spliceElements(Buffer.from('not dicom'), []), /exam attributes not added/);
});
