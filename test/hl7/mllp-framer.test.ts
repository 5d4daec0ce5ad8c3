import t from 'tap';
import { MllpFramer, type MllpFrame } from '../../src/hl7/mllp-framer.js';

const framed = (text: string): Buffer => Buffer.concat([Buffer.from([0x0b]), Buffer.from(text, 'latin1'), Buffer.from([0x1c, 0x0d])]);

function messages(frames: MllpFrame[]): string[] {
  return frames.map((frame) => (frame.kind === 'message' ? frame.payload.toString('latin1') : `oversize:${frame.bytes}`));
}

t.test('framer joins a frame split at every position', async (t) => {
  const bytes = Buffer.concat([framed('MSH|one'), framed('MSH|two')]);
  for (let cut = 1; cut < bytes.length; cut += 1) {
    for (let second = cut + 1; second < bytes.length; second += 1) {
      const framer = new MllpFramer({ maxMessageBytes: 1_024 });
      const parts = [bytes.subarray(0, cut), bytes.subarray(cut, second), bytes.subarray(second)];
      const frames = parts.flatMap((part) => framer.push(part).frames);
      if (messages(frames).join(',') !== 'MSH|one,MSH|two') {
        t.fail(`cut at ${cut} and ${second}: ${messages(frames).join(',')}`);
        return;
      }
    }
  }
  t.pass('every three-way split gives both messages');
});

t.test('framer counts and drops bytes outside frames', async (t) => {
  const framer = new MllpFramer({ maxMessageBytes: 1_024 });
  const result = framer.push(Buffer.concat([Buffer.from('noise\r\n'), framed('MSH|a'), Buffer.from([0x00, 0xff]), framed('MSH|b')]));
  t.same(messages(result.frames), ['MSH|a', 'MSH|b']);
  t.equal(result.discardedBytes, 9);
  t.notOk(framer.partial);
});

t.test('framer keeps an end block not followed by CR as data', async (t) => {
  const framer = new MllpFramer({ maxMessageBytes: 1_024 });
  const first = framer.push(Buffer.from([0x0b, 0x41, 0x1c]));
  t.same(first.frames, []);
  t.ok(framer.partial);
  const second = framer.push(Buffer.from([0x42, 0x1c, 0x0d]));
  t.same(second.frames.map((frame) => (frame.kind === 'message' ? [...frame.payload] : [])), [[0x41, 0x1c, 0x42]]);
});

t.test('framer reports an oversize frame with its head', async (t) => {
  const framer = new MllpFramer({ maxMessageBytes: 1_024 });
  const long = `MSH|^~\\&|${'x'.repeat(5_000)}`;
  const bytes = framed(long);
  const frames: MllpFrame[] = [];
  for (let offset = 0; offset < bytes.length; offset += 700) frames.push(...framer.push(bytes.subarray(offset, offset + 700)).frames);
  frames.push(...framer.push(framed('MSH|next')).frames);
  t.equal(frames.length, 2);
  const [oversize, next] = frames;
  t.equal(oversize?.kind, 'oversize');
  if (oversize?.kind === 'oversize') {
    t.equal(oversize.bytes, long.length);
    t.equal(oversize.head.toString('latin1', 0, 9), 'MSH|^~\\&|');
    t.ok(oversize.head.length <= 1_024);
  }
  t.same(messages(next ? [next] : []), ['MSH|next'], 'the frame after it is read normally');
});

t.test('framer reset drops a partial frame', async (t) => {
  const framer = new MllpFramer({ maxMessageBytes: 1_024 });
  framer.push(Buffer.from([0x0b, 0x41, 0x42]));
  t.equal(framer.reset(), 2);
  t.same(messages(framer.push(framed('MSH|c')).frames), ['MSH|c']);
});

t.test('framer drops a frame cut short by a new start block and reads the next message whole', async (t) => {
  // The sender gave up on "MSH|cut" (no end block) and sent "MSH|whole" as a new frame.
  const bytes = Buffer.concat([Buffer.from([0x0b]), Buffer.from('MSH|cut\rPID|', 'latin1'), framed('MSH|whole')]);
  for (let cut = 1; cut < bytes.length; cut += 1) {
    const framer = new MllpFramer({ maxMessageBytes: 1_024 });
    const first = framer.push(bytes.subarray(0, cut));
    const second = framer.push(bytes.subarray(cut));
    const frames = [...first.frames, ...second.frames];
    const restarted = [...first.restartedFrameBytes, ...second.restartedFrameBytes];
    if (messages(frames).join(',') !== 'MSH|whole' || restarted.join(',') !== '12') {
      t.fail(`cut at ${cut}: frames ${messages(frames).join(',')}, dropped ${restarted.join(',')}`);
      return;
    }
  }
  t.pass('at every split the cut frame is dropped (12 bytes) and the next one read alone');
});
