import t from 'tap';
import { TextDecoderForDataset } from '../../src/worklist/character-sets.js';
import { YAMADA_JIS, YAMADA_UNICODE } from './peers.js';

const bytes = (...values: number[]): Buffer => Buffer.from(values);

interface Case {
  name: string;
  characterSet: string[];
  value: Buffer;
  text: string;
  problems?: string[];
}

const cases: Case[] = [
  { name: 'ASCII without a declaration', characterSet: [], value: Buffer.from('Smith^John'), text: 'Smith^John' },
  { name: 'ISO_IR 100 maps every byte', characterSet: ['ISO_IR 100'], value: bytes(0x4d, 0xfc, 0x6c, 0x6c, 0x65, 0x72, 0x80, 0x9f), text: 'Müller\u0080\u009f' },
  { name: 'ISO_IR 192', characterSet: ['ISO_IR 192'], value: Buffer.from('Ærøskøbing^Ŝŭé=胃', 'utf8'), text: 'Ærøskøbing^Ŝŭé=胃' },
  { name: 'ISO_IR 144 Cyrillic', characterSet: ['ISO_IR 144'], value: bytes(0xbb, 0xee, 0xdd, 0xd4, 0xde, 0xdd), text: 'Люндон' },
  { name: 'ISO_IR 126 Greek', characterSet: ['ISO_IR 126'], value: bytes(0xc4, 0xe9, 0xef, 0xed, 0xf5, 0xf3, 0xe9, 0xef, 0xf2), text: 'Διονυσιος' },
  { name: 'GB18030', characterSet: ['GB18030'], value: bytes(0x57, 0x61, 0x6e, 0x67, 0x5e, 0x58, 0x69, 0x61, 0x6f, 0x44, 0x6f, 0x6e, 0x67, 0x3d, 0xcd, 0xf5, 0x5e, 0xd0, 0xa1, 0xb6, 0xab), text: 'Wang^XiaoDong=王^小东' },
  // PS3.5 Annex H, example 1.
  { name: 'ISO 2022 IR 87 with ideographic and phonetic groups', characterSet: ['', 'ISO 2022 IR 87'], value: YAMADA_JIS, text: YAMADA_UNICODE },
  // PS3.5 Annex H, example 2: half-width katakana in G1 from ISO 2022 IR 13.
  {
    name: 'ISO 2022 IR 13 katakana and IR 87 kanji',
    characterSet: ['ISO 2022 IR 13', 'ISO 2022 IR 87'],
    value: bytes(0xd4, 0xcf, 0xc0, 0xde, 0x5e, 0xc0, 0xdb, 0xb3, 0x3d, 0x1b, 0x24, 0x42, 0x3b, 0x33, 0x45, 0x44, 0x1b, 0x28, 0x4a, 0x5e, 0x1b, 0x24, 0x42, 0x42, 0x40, 0x4f, 0x3a, 0x1b, 0x28, 0x4a),
    text: 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎',
  },
  // PS3.5 Annex I, example 1: KS X 1001 in G1.
  {
    name: 'ISO 2022 IR 149 Korean',
    characterSet: ['', 'ISO 2022 IR 149'],
    value: bytes(0x48, 0x6f, 0x6e, 0x67, 0x5e, 0x47, 0x69, 0x6c, 0x64, 0x6f, 0x6e, 0x67, 0x3d, 0x1b, 0x24, 0x29, 0x43, 0xfb, 0xf3, 0x5e, 0x1b, 0x24, 0x29, 0x43, 0xd1, 0xce, 0xd4, 0xd7),
    text: 'Hong^Gildong=洪^吉洞',
  },
  { name: 'ISO 2022 IR 100 in G1', characterSet: ['ISO 2022 IR 100'], value: bytes(0x4d, 0xfc, 0x6c, 0x6c, 0x65, 0x72), text: 'Müller' },
  {
    name: 'a missing switch back ends at a control character',
    characterSet: ['', 'ISO 2022 IR 87'],
    value: Buffer.concat([Buffer.from('\x1b$B;3ED', 'latin1'), bytes(0x0d, 0x0a), Buffer.from('Next', 'latin1')]),
    text: '山田\r\nNext',
  },
  { name: 'Latin-1 bytes declared as UTF-8 are kept', characterSet: ['ISO_IR 192'], value: bytes(0x5a, 0x6f, 0xeb), text: 'Zoë', problems: ['invalid-bytes'] },
  { name: 'undeclared valid UTF-8 is read as UTF-8', characterSet: [], value: Buffer.from('Dvořák', 'utf8'), text: 'Dvořák', problems: ['undeclared-non-ascii'] },
  { name: 'undeclared other bytes are read as Latin-1', characterSet: [''], value: bytes(0x5a, 0x6f, 0xeb), text: 'Zoë', problems: ['undeclared-non-ascii'] },
  { name: 'unknown character set falls back to Latin-1', characterSet: ['ISO_IR 999'], value: bytes(0x5a, 0x6f, 0xeb), text: 'Zoë', problems: ['unknown-character-set'] },
  { name: 'unknown escape sequence is kept', characterSet: ['', 'ISO 2022 IR 87'], value: Buffer.from('A\x1b%GB', 'latin1'), text: 'A\x1b%GB', problems: ['unknown-escape-sequence'] },
  { name: 'G1 bytes with nothing designated to G1', characterSet: ['', 'ISO 2022 IR 87'], value: bytes(0x41, 0xe9), text: 'Aé', problems: ['invalid-bytes'] },
];

for (const { name, characterSet, value, text, problems } of cases) {
  t.test(name, async (t) => {
    const decoded = new TextDecoderForDataset(characterSet).decode(value);
    t.equal(decoded.text, text);
    t.same(decoded.problems, problems ?? []);
  });
}

t.test('assumed character set applies only when none is declared', async (t) => {
  const latin = bytes(0x5a, 0x6f, 0xeb);
  t.equal(new TextDecoderForDataset([], 'ISO_IR 100').decode(latin).text, 'Zoë');
  t.same(new TextDecoderForDataset([], 'ISO_IR 100').decode(latin).problems, []);
  t.equal(new TextDecoderForDataset(['ISO_IR 192'], 'ISO_IR 100').decode(Buffer.from('Zoë')).text, 'Zoë');
  t.equal(new TextDecoderForDataset([]).declaresCharacterSet, false);
  t.equal(new TextDecoderForDataset(['', 'ISO 2022 IR 87']).declaresCharacterSet, true);
});
