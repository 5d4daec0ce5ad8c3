import t from 'tap';
import { buildAck } from '../../src/hl7/hl7-ack.js';
import { Hl7Error } from '../../src/hl7/hl7-errors.js';
import { parseMessage } from '../../src/hl7/hl7-message.js';
import { mapMessage } from '../../src/hl7/order-mapping.js';

const mapping = { patientIdAuthority: undefined, accessionNumberField: 'OBR-18' };

function thrown(action: () => unknown): Hl7Error | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof Hl7Error) return error;
    throw error;
  }
  return undefined;
}

t.test('parser reads delimiters declared in MSH-1 and MSH-2', async (t) => {
  const text = 'MSH#:*!%#RIS#HOSP###ORM:O01#C1#P#2.3\rPID#1##ID1:::AUTH1*ID2:::AUTH2##Family%Part:Given!S!Kept\r';
  const { message } = parseMessage(Buffer.from(text, 'latin1'), 'ASCII');
  const pid = message.segment('PID');
  t.equal(pid?.value(3, 1, 1, 2), 'ID2', 'second repetition of PID-3');
  t.equal(pid?.value(3, 4, 1, 2), 'AUTH2');
  t.equal(pid?.value(5, 1, 2), 'Part', 'subcomponent');
  t.equal(pid?.value(5, 2), 'Given:Kept', 'escape of the component separator');
  t.same(message.separators, { field: '#', component: ':', repetition: '*', escape: '!', subcomponent: '%', truncation: '' });
});

t.test('parser decodes escape sequences', async (t) => {
  const text = [
    'MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.5||||||UNICODE UTF-8',
    'NTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f|\\H\\bold\\N\\ line\\.br\\next|\\XC3A9\\t\\Zlocal\\é|""|\\Q\\',
  ].join('\r');
  const { message } = parseMessage(Buffer.from(text, 'utf8'), 'ASCII');
  const nte = message.segment('NTE');
  t.equal(nte?.value(3), 'a|b^c&d~e\\f');
  t.equal(nte?.value(4), 'bold line\nnext');
  t.equal(nte?.value(5), 'été', 'hex escape decoded as UTF-8; a locally defined escape is dropped');
  t.equal(nte?.value(6), '', 'the HL7 null reads as empty');
  t.ok(nte?.present(6), 'but is present');
  t.equal(nte?.value(7), '\\Q\\', 'an unknown escape stays as written');
});

t.test('parser decodes bytes with the declared or default character set', async (t) => {
  const latin = Buffer.from('MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.5||||||8859/1\rPID|1||X||Jürgen\r', 'latin1');
  t.equal(parseMessage(latin, 'ASCII').message.segment('PID')?.value(5), 'Jürgen');
  const undeclared = Buffer.from('MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.5\rPID|1||X||Jürgen\r', 'latin1');
  t.equal(parseMessage(undeclared, '8859/1').message.segment('PID')?.value(5), 'Jürgen', 'hl7.defaultCharacterSet applies when MSH-18 is empty');
  t.match(thrown(() => parseMessage(undeclared, 'ASCII')), { ack: 'AE', message: /bytes above 0x7F/ });
  t.match(thrown(() => parseMessage(undeclared, 'UNICODE UTF-8')), { ack: 'AE', message: /not valid UTF-8/ });
  const greek = Buffer.from([...Buffer.from('MSH|^~\\&|A|B|||||ORM^O01|C1|P|2.5||||||8859/7\rPID|1||X||'), 0xc1, 0xe8, 0xde, 0xed, 0xe1, 0x0d]);
  t.equal(parseMessage(greek, 'ASCII').message.segment('PID')?.value(5), 'Αθήνα');
  const switching = Buffer.from('MSH|^~\\&|A|B|||||ORM^O01|C1|P|2.5\rPID|1||X||\\C2842\\x\r', 'latin1');
  t.match(thrown(() => parseMessage(switching, 'ASCII').message.segment('PID')?.value(5)), { ack: 'AE', message: /character set switching escapes/ });
});

t.test('parser rejects a frame that is not HL7', async (t) => {
  t.match(thrown(() => parseMessage(Buffer.from('hello'), 'ASCII')), { ack: 'AR', condition: { code: '100' } });
  t.match(thrown(() => parseMessage(Buffer.from('MSH|^^\\&|x'), 'ASCII')), { ack: 'AR', message: /distinct delimiter characters/ });
});

t.test('ORM mapping takes the first PID-3 without an authority and a configured accession field', async (t) => {
  const text = [
    'MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.3',
    'PID|1||FIRST1^^^A~SECOND2^^^B||Doe^John^Q^III^Mr~Alias^Al^^^^^A',
    'ORC|XO|P1',
    'OBR|1|P1||X^Text^L||||||||||||||ACC-OBR18',
    'ZDS|1.2.3^R^Application^DICOM|ACC-ZDS2',
  ].join('\r');
  const { message } = parseMessage(Buffer.from(text, 'latin1'), 'ASCII');
  const event = mapMessage(message, mapping);
  const action = event.kind === 'orders' ? event.actions[0] : undefined;
  const entry = action?.kind === 'place' ? action.entries[0] : undefined;
  t.equal(entry?.patientId, 'FIRST1');
  t.equal(entry?.issuerOfPatientId, 'A');
  t.equal(entry?.patientName, 'Doe^John^Q^Mr^III', 'XPN family^given^second^suffix^prefix becomes PN family^given^middle^prefix^suffix');
  t.equal(entry?.accessionNumber, 'ACC-OBR18');
  const zds = mapMessage(message, { ...mapping, accessionNumberField: 'ZDS-2' });
  const zdsAction = zds.kind === 'orders' ? zds.actions[0] : undefined;
  t.equal(zdsAction?.kind === 'place' ? zdsAction.entries[0]?.accessionNumber : undefined, 'ACC-ZDS2');
});

t.test('mapping rejects unknown order control and long values', async (t) => {
  const base = ['MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.3', 'PID|1||ID1'];
  const parse = (...segments: string[]) => parseMessage(Buffer.from([...base, ...segments].join('\r'), 'latin1'), 'ASCII').message;
  t.match(thrown(() => mapMessage(parse('ORC|ZZ|P1', 'OBR|1|P1'), mapping)), { ack: 'AE', message: /order control code "ZZ" in ORC-1 is not supported/ });
  t.match(thrown(() => mapMessage(parse('ORC|NW|P1', `OBR|1|P1||||||||||||||||${'A'.repeat(17)}`), mapping)), {
    ack: 'AE',
    message: 'OBR-18 is longer than 16 characters',
    location: { segment: 'OBR', field: 18 },
  });
  t.match(thrown(() => mapMessage(parse('OBR|1|P1'), mapping)), { message: 'message has no ORC segment' });
  t.match(thrown(() => mapMessage(parse('ORC|NW', 'OBR|1||||||||||||||||||ACC'), mapping)), { message: /neither a placer order number/ });
});

t.test('ACK escapes delimiters in the reason and swaps the applications', async (t) => {
  const header = { separators: { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', truncation: '' }, sendingApplication: 'RIS', sendingFacility: 'HOSP', controlId: 'C9', processingId: 'P', versionId: '2.5', characterSet: 'UNICODE UTF-8' };
  const error = new Hl7Error('AE', { code: '101', text: 'Required field missing' }, 'a|b^c é', { segment: 'PID', field: 3 });
  const ack = buildAck({ header, triggerEvent: 'O01', code: 'AE', error, receivingApplication: 'ENDOCAP', receivingFacility: 'ENDO', controlId: 'A1', now: new Date(2026, 11, 4, 10, 15, 0) }).toString('latin1');
  const [mshLine, msaLine, errLine] = ack.split('\r');
  t.match(mshLine, /^MSH\|\^~\\&\|ENDOCAP\|ENDO\|RIS\|HOSP\|20261204101500[+-]\d{4}\|\|ACK\^O01\^ACK\|A1\|P\|2\.5\|\|\|\|\|\|UNICODE UTF-8$/);
  t.equal(msaLine, 'MSA|AE|C9|a\\F\\b\\S\\c ?');
  t.equal(errLine, 'ERR|PID^1^3^101&Required field missing&HL70357|PID^1^3|101^Required field missing^HL70357|E||||a\\F\\b\\S\\c ?');
});

t.test('mapping answers AE naming the field for a date that is not on the calendar', async (t) => {
  const parse = (pid7: string, tq17 = '') =>
    parseMessage(Buffer.from(['MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.5', `PID|1||ID1||Doe^Jane||${pid7}`, 'ORC|NW|P1', `TQ1|1||||||${tq17}`, 'OBR|1|P1||||||||||||||||ACC1'].join('\r'), 'latin1'), 'ASCII').message;
  for (const bad of ['20261345', '20260230', '2026-12-04', '19700101x']) {
    t.match(thrown(() => mapMessage(parse(bad), mapping)), { ack: 'AE', message: /^PID-7 is not a valid date \(YYYYMMDD/, location: { segment: 'PID', field: 7 } }, bad);
  }
  t.match(thrown(() => mapMessage(parse('19700101', '202612042561'), mapping)), { ack: 'AE', message: /^TQ1-7 is not a valid date/, location: { segment: 'TQ1', field: 7 } }, 'minute 61');

  const event = mapMessage(parse('20240229', '20261204103000.5+0100'), mapping);
  const entry = event.kind === 'orders' && event.actions[0]?.kind === 'place' ? event.actions[0].entries[0] : undefined;
  t.equal(entry?.patientBirthDate, '20240229', 'a leap day is a date');
  t.match(entry?.step, { startDate: '20261204', startTime: '103000.5' }, 'seconds, fraction and offset are read');
  const yearOnly = mapMessage(parse('1970'), mapping);
  const yearEntry = yearOnly.kind === 'orders' && yearOnly.actions[0]?.kind === 'place' ? yearOnly.actions[0].entries[0] : undefined;
  t.equal(yearEntry?.patientBirthDate, '', 'a year alone is valid HL7 but no DICOM date, so it is left out');
});

t.test('mapping turns PID-8 into a DICOM sex code and answers AE for other values and long names', async (t) => {
  const parse = (pid5: string, pid8: string) =>
    parseMessage(Buffer.from(['MSH|^~\\&|RIS|HOSP|||||ORM^O01|C1|P|2.5', `PID|1||ID1||${pid5}||19700101|${pid8}`, 'ORC|NW|P1', 'OBR|1|P1||||||||||||||||ACC1'].join('\r'), 'latin1'), 'ASCII').message;
  const sexOf = (pid8: string): string | undefined => {
    const event = mapMessage(parse('Doe^Jane', pid8), mapping);
    return event.kind === 'orders' && event.actions[0]?.kind === 'place' ? event.actions[0].entries[0]?.patientSex : undefined;
  };
  t.same(['F', 'm', 'U', '', 'A', 'N', 'X', 'O'].map(sexOf), ['F', 'M', '', '', 'O', 'O', 'O', 'O']);
  t.match(thrown(() => mapMessage(parse('Doe^Jane', 'female'.repeat(20)), mapping)), { ack: 'AE', message: /^PID-8 is not an administrative sex code/, location: { segment: 'PID', field: 8 } });
  t.match(thrown(() => mapMessage(parse(`${'D'.repeat(40)}^${'J'.repeat(30)}`, 'F'), mapping)), { ack: 'AE', message: /^PID-5 is longer than 64 characters/, location: { segment: 'PID', field: 5 } });
});
