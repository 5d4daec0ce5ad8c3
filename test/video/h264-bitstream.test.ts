import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { containsIdr, containsParameterSets, levelName, parameterSets, parseSps, profileName, splitNalUnits } from '../../src/video/h264-bitstream.js';
import { runFfmpeg } from './helpers.js';

const directory = await mkdtemp(path.join(tmpdir(), 'endocap-h264-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));

/** Encodes a short Annex B stream with the ffmpeg CLI, an encoder independent of the code under test. */
async function encode(name: string, args: string[], size = '320x240', rate = 25): Promise<Buffer> {
  const file = path.join(directory, `${name}.h264`);
  await runFfmpeg(['-f', 'lavfi', '-i', `testsrc2=s=${size}:r=${rate}`, '-frames:v', '3', '-c:v', 'libx264', ...args, '-f', 'h264', file]);
  return readFile(file);
}

t.test('sps of high profile stream', async (t) => {
  const stream = await encode('high', ['-profile:v', 'high', '-level', '4.1', '-pix_fmt', 'yuv420p']);
  const { sps, pps } = parameterSets(stream);
  t.ok(sps, 'SPS found');
  t.ok(pps, 'PPS found');
  const parsed = parseSps(sps ?? Buffer.alloc(0));
  t.equal(parsed.profileIdc, 100);
  t.equal(parsed.levelIdc, 41);
  t.equal(parsed.chromaFormatIdc, 1);
  t.equal(parsed.bitDepthLuma, 8);
  t.equal(parsed.width, 320);
  t.equal(parsed.height, 240);
  t.equal(parsed.frameMbsOnly, true);
  t.equal(parsed.frameSizeInMbs, 20 * 15);
  t.equal(parsed.fullRange, false);
  t.equal(parsed.frameRate, 25);
  t.equal(profileName(parsed.profileIdc), 'High (100)');
  t.equal(levelName(parsed.levelIdc), '4.1');
});

t.test('sps with cropping gives the display size', async (t) => {
  // 1080 is not a multiple of 16: the SPS codes 1088 lines and crops 8.
  const stream = await encode('crop', ['-profile:v', 'high', '-preset', 'ultrafast'], '1920x1080', 30);
  const parsed = parseSps(parameterSets(stream).sps ?? Buffer.alloc(0));
  t.equal(parsed.width, 1920);
  t.equal(parsed.height, 1080);
  t.equal(parsed.frameSizeInMbs, 120 * 68);
});

t.test('sps of baseline, 4:2:2 and full-range streams', async (t) => {
  const baseline = parseSps(parameterSets(await encode('baseline', ['-profile:v', 'baseline'])).sps ?? Buffer.alloc(0));
  t.equal(baseline.profileIdc, 66);
  t.equal(profileName(baseline.profileIdc, baseline.constraintFlags), 'Constrained Baseline (66)');

  const chroma422 = parseSps(parameterSets(await encode('422', ['-pix_fmt', 'yuv422p'])).sps ?? Buffer.alloc(0));
  t.equal(chroma422.profileIdc, 122);
  t.equal(chroma422.chromaFormatIdc, 2);

  const full = parseSps(parameterSets(await encode('full', ['-pix_fmt', 'yuvj420p'])).sps ?? Buffer.alloc(0));
  t.equal(full.fullRange, true);
});

t.test('nal units and idr detection', async (t) => {
  const stream = await encode('units', ['-g', '2', '-bf', '0']);
  const units = splitNalUnits(stream);
  const types = units.map((unit) => (unit[0] ?? 0) & 0x1f);
  t.ok(types.includes(7) && types.includes(8) && types.includes(5), `SPS, PPS and IDR among ${types.join(',')}`);
  t.ok(containsIdr(stream));
  t.ok(containsParameterSets(stream));
  const nonIdr = Buffer.from([0, 0, 0, 1, 0x41, 0x9a, 0x00]);
  t.notOk(containsIdr(nonIdr), 'a P slice is not a key frame');
  t.notOk(containsParameterSets(nonIdr));
});

/** Writes bits and Exp-Golomb codes, to build parameter sets by hand. */
class BitWriter {
  private readonly bits: number[] = [];

  put(value: number, count: number): this {
    for (let index = count - 1; index >= 0; index -= 1) this.bits.push(Math.floor(value / 2 ** index) % 2);
    return this;
  }

  unsigned(value: number): this {
    const code = value + 1;
    const length = Math.floor(Math.log2(code)) + 1;
    return this.put(0, length - 1).put(code, length);
  }

  /** RBSP trailing bits, then the bytes. */
  bytes(): Buffer {
    this.bits.push(1);
    while (this.bits.length % 8 !== 0) this.bits.push(0);
    const output = Buffer.alloc(this.bits.length / 8);
    this.bits.forEach((bit, index) => {
      output[index >> 3] = (output[index >> 3] ?? 0) | (bit << (7 - (index & 7)));
    });
    return output;
  }
}

/** Inserts emulation prevention bytes as an encoder must (H.264 7.4.1). */
function protect(payload: Buffer): Buffer {
  const output: number[] = [];
  let zeros = 0;
  for (const byte of payload) {
    if (zeros >= 2 && byte <= 3) {
      output.push(3);
      zeros = 0;
    }
    output.push(byte);
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  return Buffer.from(output);
}

t.test('sps with emulation prevention bytes', async (t) => {
  // Baseline, level 1.0: 256 macroblocks wide and 16384 high code a run of
  // zero bits long enough to need an emulation prevention byte.
  const payload = new BitWriter()
    .put(66, 8)
    .put(0, 8)
    .put(10, 8)
    .unsigned(0)
    .unsigned(0)
    .unsigned(2)
    .unsigned(0)
    .put(0, 1)
    .unsigned(255)
    .unsigned(16383)
    .put(1, 1)
    .put(1, 1)
    .put(0, 1)
    .put(0, 1)
    .bytes();
  const nal = Buffer.concat([Buffer.from([0, 0, 0, 1, 0x67]), protect(payload)]);
  t.ok(nal.subarray(5).includes(Buffer.from([0, 0, 3])), 'the test SPS needs emulation prevention');
  const parsed = parseSps(nal);
  t.equal(parsed.profileIdc, 66);
  t.equal(parsed.width, 4096);
  t.equal(parsed.height, 16384 * 16);
  t.equal(parsed.aspectRatioIdc, undefined);
});

t.test('malformed sps is rejected', async (t) => {
  t.throws(() => parseSps(Buffer.from([0, 0, 0, 1, 0x68, 0xce])), /not an H\.264 sequence parameter set/);
  t.throws(() => parseSps(Buffer.from([0, 0, 0, 1, 0x67, 0x64])), /ends early/);
});
