import t from 'tap';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import { buildVlEndoscopicImage } from '../../src/dicom/vl-endoscopic.js';
import { blackWhitePattern, encodeBaselineJpeg, makeTempDir, sampleInput } from './fixtures/dicom.js';

const { dir, remove } = await makeTempDir('object-metadata');
t.teardown(remove);
const jpeg = await encodeBaselineJpeg(dir, 64, 48, blackWhitePattern);
const part10 = buildVlEndoscopicImage(sampleInput(jpeg, 64, 48));

/** Builds File Meta Information by hand: explicit VR little endian elements of group 0002. */
function metaHeader(elements: Array<[number, string, Buffer]>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(128), Buffer.from('DICM', 'latin1')];
  for (const [element, vr, value] of elements) {
    const long = vr === 'OB';
    const head = Buffer.alloc(long ? 12 : 8);
    head.writeUInt16LE(0x0002, 0);
    head.writeUInt16LE(element, 2);
    head.write(vr, 4, 'latin1');
    if (long) head.writeUInt32LE(value.length, 8);
    else head.writeUInt16LE(value.length, 6);
    parts.push(head, value);
  }
  return Buffer.concat(parts);
}

t.test('object metadata read from built object', async (t) => {
  t.same(readObjectMetadata(part10), {
    sopClassUid: '1.2.840.10008.5.1.4.1.1.77.1.1',
    sopInstanceUid: '1.2.826.0.1.3680043.10.999.1.1.1',
    transferSyntaxUid: '1.2.840.10008.1.2.4.50',
  });
});

t.test('object metadata strips space and NUL padding', async (t) => {
  const header = metaHeader([
    [0x0001, 'OB', Buffer.from([0, 1])],
    [0x0002, 'UI', Buffer.from('1.2.3\0', 'latin1')],
    [0x0003, 'UI', Buffer.from('1.2.34 ', 'latin1')],
    [0x0010, 'UI', Buffer.from('1.2.840.10008.1.2.1\0', 'latin1')],
  ]);
  t.same(readObjectMetadata(header), { sopClassUid: '1.2.3', sopInstanceUid: '1.2.34', transferSyntaxUid: '1.2.840.10008.1.2.1' });
});

t.test('object metadata rejects damaged files', async (t) => {
  t.throws(() => readObjectMetadata(Buffer.alloc(0)), {
    code: 'DICOM_OBJECT_INVALID',
    message: 'invalid DICOM Part 10 file: no "DICM" prefix after the 128-byte preamble',
  });
  t.throws(() => readObjectMetadata(part10.subarray(0, 200)), {
    code: 'DICOM_OBJECT_INVALID',
    message: /runs past the end of the file|missing/,
  });
  const noInstance = metaHeader([
    [0x0002, 'UI', Buffer.from('1.2.3\0', 'latin1')],
    [0x0010, 'UI', Buffer.from('1.2.840.10008.1.2.1\0', 'latin1')],
  ]);
  t.throws(() => readObjectMetadata(noInstance), { message: 'invalid DICOM Part 10 file: MediaStorageSOPInstanceUID (0002,0003) missing' });
  const badUid = metaHeader([
    [0x0002, 'UI', Buffer.from('1.2.3\0', 'latin1')],
    [0x0003, 'UI', Buffer.from('1.02', 'latin1')],
    [0x0010, 'UI', Buffer.from('1.2.840.10008.1.2.1\0', 'latin1')],
  ]);
  t.throws(() => readObjectMetadata(badUid), { message: 'invalid DICOM Part 10 file: sopInstanceUid is not a valid UID' });
});

t.test('object metadata of every truncation is complete or rejected', async (t) => {
  // Cuts inside the header must throw; cuts after it still return the full metadata.
  let rejected = 0;
  for (let length = 0; length < 400; length += 1) {
    try {
      t.same(readObjectMetadata(part10.subarray(0, length)), readObjectMetadata(part10));
    } catch (error) {
      rejected += 1;
      t.match(error, { code: 'DICOM_OBJECT_INVALID' });
    }
  }
  t.ok(rejected > 300, `${rejected} truncations rejected`);
});
