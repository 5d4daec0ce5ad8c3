import t from 'tap';
import { queryWorklist } from '../../src/worklist/worklist-client.js';
import { encodeDataset, type DatasetElement } from '../../src/worklist/dataset-writer.js';
import { buildWorklistQuery } from '../../src/worklist/worklist-query.js';
import { Tag } from '../../src/worklist/tags.js';
import { memoryLogger, today, worklistConfig } from './fixtures.js';
import { startRawFindScp } from './raw-find-scp.js';
import { YAMADA_JIS, YAMADA_UNICODE } from './peers.js';

const query = buildWorklistQuery({ stationAeTitle: 'ENDOCAP_TEST', modality: 'ES', fromDate: today, toDate: today });

/** Explicit VR Little Endian element with a raw value, padded with a space. */
function raw(tag: number, vr: string, value: Buffer): Buffer {
  const padded = value.length % 2 === 0 ? value : Buffer.concat([value, Buffer.from(' ')]);
  const header = Buffer.alloc(8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.write(vr, 4, 'latin1');
  header.writeUInt16LE(padded.length, 6);
  return Buffer.concat([header, padded]);
}

/** A sequence and its items, all of undefined length, as many servers send them. */
function undefinedLengthSequence(tag: number, items: Buffer[]): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.write('SQ', 4, 'latin1');
  header.writeUInt32LE(0xffffffff, 8);
  const parts: Buffer[] = [header];
  for (const body of items) {
    parts.push(Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]), body, Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]));
  }
  parts.push(Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

const text = (tag: number, vr: 'SH' | 'LO' | 'PN' | 'CS' | 'AE' | 'DA' | 'TM' | 'UI', value: string): DatasetElement => ({ tag, vr, value });

t.test('step attributes at the top level are accepted with a warning', async (t) => {
  const match = encodeDataset(
    [
      text(Tag.SpecificCharacterSet, 'CS', 'ISO_IR 192'),
      text(Tag.AccessionNumber, 'SH', 'ACC-TOP'),
      text(Tag.PatientName, 'PN', 'Top^Level'),
      text(Tag.PatientId, 'LO', 'PID-TOP'),
      text(Tag.Modality, 'CS', 'ES'),
      text(Tag.ScheduledStationAeTitle, 'AE', 'ENDOCAP_TEST'),
      text(Tag.ScheduledProcedureStepStartDate, 'DA', today),
      text(Tag.ScheduledProcedureStepStartTime, 'TM', '0930'),
      text(Tag.ScheduledProcedureStepDescription, 'LO', 'Schritt oben ö'),
      text(Tag.ScheduledProcedureStepId, 'SH', 'SPS-TOP'),
    ],
    { explicitVr: true },
  );
  const scp = await startRawFindScp({ matches: [match] });
  t.teardown(() => scp.stop());
  const { log } = memoryLogger();
  const result = await queryWorklist({ server: worklistConfig(scp.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(result.entries.length, 1);
  const step = result.entries[0]?.step;
  t.equal(step?.id, 'SPS-TOP');
  t.equal(step?.stationAeTitle, 'ENDOCAP_TEST');
  t.equal(step?.startTime, '0930');
  t.equal(step?.description, 'Schritt oben ö');
  t.same(result.warnings, ['step-attributes-at-top-level']);
});

t.test('undefined-length sequences decode with the declared set', async (t) => {
  const item = Buffer.concat([
    raw(Tag.Modality, 'CS', Buffer.from('ES')),
    raw(Tag.ScheduledStationAeTitle, 'AE', Buffer.from('ENDOCAP_TEST')),
    raw(Tag.ScheduledProcedureStepDescription, 'LO', YAMADA_JIS),
    raw(Tag.ScheduledProcedureStepId, 'SH', Buffer.from('SPS-JIS')),
  ]);
  const match = Buffer.concat([
    raw(Tag.SpecificCharacterSet, 'CS', Buffer.from('\\ISO 2022 IR 87')),
    raw(Tag.AccessionNumber, 'SH', Buffer.from('ACC-JIS')),
    raw(Tag.PatientName, 'PN', YAMADA_JIS),
    undefinedLengthSequence(Tag.ScheduledProcedureStepSequence, [item]),
  ]);
  const scp = await startRawFindScp({ matches: [match], pendingStatus: 0xff01 });
  t.teardown(() => scp.stop());
  const { log } = memoryLogger();
  const result = await queryWorklist({ server: worklistConfig(scp.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(result.entries[0]?.patientName, YAMADA_UNICODE);
  t.equal(result.entries[0]?.step.description, YAMADA_UNICODE, 'text inside an undefined-length item');
  t.equal(result.entries[0]?.step.id, 'SPS-JIS');
  t.same(result.warnings, []);
});

t.test('malformed and oversized matches are skipped, the rest kept', async (t) => {
  const good = encodeDataset([text(Tag.AccessionNumber, 'SH', 'ACC-GOOD'), text(Tag.PatientName, 'PN', 'Good^Entry')], { explicitVr: true });
  const truncated = good.subarray(0, good.length - 5);
  const badVr = Buffer.from(good);
  badVr.write('??', 4, 'latin1');
  const runaway = Buffer.concat([good, Buffer.from([0x10, 0x00, 0x20, 0x00, 0x4c, 0x4f, 0xff, 0x7f])]);
  const huge = encodeDataset([text(Tag.AccessionNumber, 'SH', 'ACC-HUGE'), { tag: 0x00104000, vr: 'LT', value: 'x'.repeat(10_000) } as DatasetElement], { explicitVr: true });
  const oversized = Buffer.concat(Array.from({ length: 120 }, () => huge));
  const scp = await startRawFindScp({ matches: [truncated, good, badVr, runaway, oversized] });
  t.teardown(() => scp.stop());
  const { log, lines } = memoryLogger();
  const result = await queryWorklist({ server: worklistConfig(scp.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(result.matches, 5);
  t.equal(result.malformed, 4, 'truncated, bad VR, runaway length and oversized');
  t.same(result.entries.map((entry) => entry.accessionNumber), ['ACC-GOOD']);
  t.notMatch(lines(), /Good\^Entry/);
});

t.test('wrong character set inside a sequence is reported', async (t) => {
  const item = Buffer.concat([raw(Tag.ScheduledProcedureStepDescription, 'LO', Buffer.from('Gastroskopie für', 'latin1')), raw(Tag.ScheduledProcedureStepId, 'SH', Buffer.from('SPS-W'))]);
  const match = Buffer.concat([
    raw(Tag.SpecificCharacterSet, 'CS', Buffer.from('ISO_IR 192')),
    raw(Tag.AccessionNumber, 'SH', Buffer.from('ACC-W')),
    undefinedLengthSequence(Tag.ScheduledProcedureStepSequence, [item]),
  ]);
  const scp = await startRawFindScp({ matches: [match] });
  t.teardown(() => scp.stop());
  const { log } = memoryLogger();
  const result = await queryWorklist({ server: worklistConfig(scp.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(result.entries[0]?.step.description, 'Gastroskopie für', 'Latin-1 bytes kept as Latin-1, nothing lost');
  t.same(result.warnings, ['invalid-bytes']);
});
