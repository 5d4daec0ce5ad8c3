import { randomBytes } from 'node:crypto';
import t from 'tap';
import { BytePedalDecoder, LinePedalDecoder } from '../../src/footswitch/decoders.js';

function collect(): { levels: boolean[]; onLevel: (down: boolean) => void } {
  const levels: boolean[] = [];
  return { levels, onLevel: (down) => levels.push(down) };
}

t.test('byte decoder maps and counts unknown bytes', async (t) => {
  const decoder = new BytePedalDecoder({ down: [0x44, 0x31], up: [0x55] });
  const { levels, onLevel } = collect();
  const ignored = decoder.decode(Buffer.from([0x78, 0x44, 0x31, 0x79, 0x55, 0x00, 0xff]), onLevel);
  t.same(levels, [true, true, false]);
  t.equal(ignored, 4);
});

t.test('line decoder joins lines split across chunks', async (t) => {
  const decoder = new LinePedalDecoder({ down: ['PEDAL DOWN'], up: ['PEDAL UP'], maxLineLength: 64 });
  const { levels, onLevel } = collect();
  for (const chunk of ['PED', 'AL DO', 'WN\r', '\n  PEDAL', ' UP  \r', 'PEDAL DOWN\n', 'PEDAL UP']) {
    decoder.decode(Buffer.from(chunk), onLevel);
  }
  t.same(levels, [true, false, true], 'the last line has no terminator yet');
  decoder.decode(Buffer.from('\n'), onLevel);
  t.same(levels, [true, false, true, false]);
});

t.test('line decoder drops overlong line and recovers', async (t) => {
  const decoder = new LinePedalDecoder({ down: ['D'], up: ['U'], maxLineLength: 16 });
  const { levels, onLevel } = collect();
  let overlong = 0;
  for (let chunk = 0; chunk < 1_000; chunk += 1) overlong += decoder.decode(Buffer.alloc(1_000, 0x44), onLevel).overlongLines;
  t.equal(overlong, 1, 'one line, counted once');
  const tail = decoder.decode(Buffer.from('DDD\nD\nU\n'), onLevel);
  t.equal(tail.overlongLines, 0);
  t.same(levels, [true, false], 'the end of the overlong line is dropped with it');
});

t.test('line decoder counts unknown lines', async (t) => {
  const decoder = new LinePedalDecoder({ down: ['D'], up: ['U'], maxLineLength: 16 });
  const { levels, onLevel } = collect();
  const result = decoder.decode(Buffer.from('hello\r\n\r\nD\r\nDU\n'), onLevel);
  t.equal(result.unknownLines, 2);
  t.same(levels, [true]);
});

t.test('line decoder survives random bytes', async (t) => {
  const decoder = new LinePedalDecoder({ down: ['PEDAL DOWN'], up: ['PEDAL UP'], maxLineLength: 64 });
  const { levels, onLevel } = collect();
  for (let chunk = 0; chunk < 64; chunk += 1) decoder.decode(randomBytes(16_384), onLevel);
  t.same(levels, []);
  decoder.decode(Buffer.from('\nPEDAL DOWN\n'), onLevel);
  t.same(levels, [true], 'a valid line after garbage still counts');
});
