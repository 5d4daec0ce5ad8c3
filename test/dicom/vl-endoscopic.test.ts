import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { EndocapError } from '../../src/errors.js';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import {
  JPEG_BASELINE_TRANSFER_SYNTAX,
  VL_ENDOSCOPIC_IMAGE_STORAGE,
  buildVlEndoscopicImage,
  type VlEndoscopicInput,
} from '../../src/dicom/vl-endoscopic.js';
import {
  blackWhitePattern,
  encodeBaselineJpeg,
  makeTempDir,
  pydicom,
  run,
  sampleInput,
  validateWithDciodvfy,
} from './fixtures/dicom.js';

const { dir, remove } = await makeTempDir('vl-endoscopic');
t.teardown(remove);

const jpeg = await encodeBaselineJpeg(dir, 64, 48, blackWhitePattern);

let fileCounter = 0;
async function writeObject(input: VlEndoscopicInput): Promise<string> {
  fileCounter += 1;
  const file = path.join(dir, `object-${fileCounter}.dcm`);
  await writeFile(file, buildVlEndoscopicImage(input));
  return file;
}

/** The assertions of a tap test used by helpers. */
type Checks = Pick<typeof t, 'same' | 'comment'>;

async function expectValid(t: Checks, file: string): Promise<string[]> {
  const { errors, warnings } = await validateWithDciodvfy(file);
  for (const warning of warnings) t.comment(`dciodvfy: ${warning}`);
  t.same(errors, [], 'dciodvfy reports no errors');
  return warnings;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface Decoded {
  photometric: string;
  shape: number[];
  regions: Record<string, { rgbMin: number; rgbMax: number; yMin: number; yMax: number }>;
}

// pydicom's Pillow handler returns YCbCr for YBR_FULL_422; Y and the converted RGB are both checked.
const decodeScript = `
import sys, json
import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import convert_color_space
ds = pydicom.dcmread(sys.argv[1])
pixels = ds.pixel_array
photometric = ds.PhotometricInterpretation
if 'YBR' in photometric:
    ybr = pixels
    rgb = convert_color_space(pixels, 'YBR_FULL', 'RGB')
else:
    rgb = pixels
    ybr = convert_color_space(pixels, 'RGB', 'YBR_FULL')
regions = {
    'black': (slice(4, 28), slice(4, 28)),
    'whiteRight': (slice(4, 44), slice(36, 60)),
    'whiteBottom': (slice(36, 44), slice(4, 28)),
}
out = {'photometric': photometric, 'shape': list(pixels.shape), 'regions': {}}
for name, (rows, cols) in regions.items():
    out['regions'][name] = {
        'rgbMin': int(rgb[rows, cols].min()), 'rgbMax': int(rgb[rows, cols].max()),
        'yMin': int(ybr[rows, cols, 0].min()), 'yMax': int(ybr[rows, cols, 0].max()),
    }
print(json.dumps(out))
`;

t.test('vl endoscopic image passes dciodvfy', async (t) => {
  const file = await writeObject(sampleInput(jpeg, 64, 48));
  const warnings = await expectValid(t, file);
  t.ok(warnings.some((line) => line.includes('<Laterality>')), 'empty Laterality is reported as a warning when the region is unknown');
});

t.test('vl endoscopic image parses with dcmdump', async (t) => {
  const file = await writeObject(sampleInput(jpeg, 64, 48));
  const { stdout } = await run('dcmdump', ['-M', file]);
  t.match(stdout, /\(0002,0010\) UI =JPEGBaseline/);
  t.match(stdout, /\(0002,0016\) AE \[ENDO_TOWER_1\]/);
  t.match(stdout, /\(0008,0060\) CS \[ES\]/);
  t.match(stdout, /\(0028,0004\) CS \[YBR_FULL_422\]/);
  t.match(stdout, /\(0028,2110\) CS \[01\]/);
  t.match(stdout, /\(0028,2114\) CS \[ISO_10918_1\]/);
  t.match(stdout, /\(0028,0301\) CS \[YES\]/);
  t.match(stdout, /\(0008,0008\) CS \[ORIGINAL\\PRIMARY\]/);
  t.match(stdout, /\(0008,0070\) LO \[endocap\]/);
  t.match(stdout, /\(0018,1000\) LO \[BOX-0001\]/);
  t.match(stdout, /\(0008,002a\) DT \[20261214101530\.123[+-]\d{4}\]/);
  t.match(stdout, /\(0008,0023\) DA \[20261214\]/);
  t.match(stdout, /\(0008,0033\) TM \[101530\.123\]/);
  t.match(stdout, /\(7fe0,0010\) OB \(PixelSequence #=2\)/, 'offset table plus one fragment');
  t.notMatch(stdout, /\(0008,0005\)/, 'no SpecificCharacterSet for ASCII-only text');
});

t.test('pydicom decodes black and white levels', async (t) => {
  const file = await writeObject(sampleInput(jpeg, 64, 48));
  const decoded = await pydicom<Decoded>(decodeScript, file);
  t.same(decoded.shape, [48, 64, 3]);
  t.comment(`pydicom photometric interpretation after decoding: ${decoded.photometric}`);
  const { black, whiteRight, whiteBottom } = decoded.regions;
  t.ok(black !== undefined && whiteRight !== undefined && whiteBottom !== undefined, 'all regions measured');
  if (black === undefined || whiteRight === undefined || whiteBottom === undefined) return;
  t.ok(black.rgbMax <= 3, `black RGB at most 3, got ${black.rgbMax}`);
  t.ok(black.yMax <= 3, `black Y at most 3, got ${black.yMax}`);
  for (const [name, white] of [['right', whiteRight], ['bottom', whiteBottom]] as const) {
    t.ok(white.rgbMin >= 252, `white ${name} RGB at least 252, got ${white.rgbMin}`);
    t.ok(white.yMin >= 252, `white ${name} Y at least 252, got ${white.yMin}`);
  }
});

t.test('pixel data is one fragment with a one-entry offset table', async (t) => {
  // Noise compresses badly, so this JPEG is larger than dcmjs's default 20 KiB fragment size.
  let seed = 12345;
  const noise = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % 256;
  };
  const big = await encodeBaselineJpeg(dir, 320, 240, () => [noise(), noise(), noise()]);
  t.ok(big.length > 20 * 1024, `JPEG is ${big.length} bytes`);

  // A view into a larger buffer, as node-av and fs hand out, must be written exactly.
  const backing = Buffer.alloc(big.length + 1000, 0x55);
  big.copy(backing, 500);
  const view = backing.subarray(500, 500 + big.length);
  const file = await writeObject(sampleInput(view, 320, 240));
  await expectValid(t, file);

  const fragments = await pydicom<{ hasOffsets: boolean; offsets: number[]; lengths: number[]; hashes: string[] }>(
    `
import sys, json, hashlib
import pydicom
from pydicom.encaps import get_frame_offsets, generate_pixel_data_fragment
from pydicom.filebase import DicomBytesIO
ds = pydicom.dcmread(sys.argv[1])
fp = DicomBytesIO(ds.PixelData)
fp.is_little_endian = True
has_offsets, offsets = get_frame_offsets(fp)
fragments = list(generate_pixel_data_fragment(fp))
print(json.dumps({'hasOffsets': has_offsets, 'offsets': offsets, 'lengths': [len(f) for f in fragments],
                  'hashes': [hashlib.sha256(f[:${big.length}]).hexdigest() for f in fragments]}))
`,
    file,
  );
  t.same(fragments.offsets, [0], 'offset table has the single entry 0');
  t.equal(fragments.lengths.length, 1, 'one fragment');
  t.ok(fragments.lengths[0] === big.length || fragments.lengths[0] === big.length + 1, 'fragment is the JPEG, padded to even length');
  t.equal(fragments.hashes[0], sha256(big), 'fragment bytes are the JPEG bytes');
});

t.test('non-ASCII text round-trips as ISO_IR 192', async (t) => {
  const base = sampleInput(jpeg, 64, 48);
  const input = sampleInput(jpeg, 64, 48, {
    station: { ...base.station, institutionName: 'Hôpital Saint-Étienne', departmentName: 'Gastroentérologie' },
    study: { ...base.study, patientName: 'Müller^Jörg', referringPhysicianName: '山田^太郎', patientId: 'ÅÄÖ-42' },
    anatomicRegion: { codeValue: '71854001', codingSchemeDesignator: 'SCT', codeMeaning: 'Côlon', paired: false },
  });
  const file = await writeObject(input);
  await expectValid(t, file);
  const values = await pydicom<Record<string, string>>(
    `
import sys, json
import pydicom
ds = pydicom.dcmread(sys.argv[1])
print(json.dumps({
  'charset': ds.SpecificCharacterSet, 'patientName': str(ds.PatientName), 'patientId': ds.PatientID,
  'referring': str(ds.ReferringPhysicianName), 'institution': ds.InstitutionName,
  'department': ds.InstitutionalDepartmentName, 'region': ds.AnatomicRegionSequence[0].CodeMeaning,
}))
`,
    file,
  );
  t.equal(values.charset, 'ISO_IR 192');
  t.equal(values.patientName, 'Müller^Jörg');
  t.equal(values.patientId, 'ÅÄÖ-42');
  t.equal(values.referring, '山田^太郎');
  t.equal(values.institution, 'Hôpital Saint-Étienne');
  t.equal(values.department, 'Gastroentérologie');
  t.equal(values.region, 'Côlon');
});

t.test('laterality follows the anatomic region', async (t) => {
  const laterality = (file: string) =>
    pydicom<{ present: boolean; value: string | null }>(
      `
import sys, json
import pydicom
ds = pydicom.dcmread(sys.argv[1])
present = 'Laterality' in ds
print(json.dumps({'present': present, 'value': (ds.Laterality or None) if present else None}))
`,
      file,
    );

  const colon = { codeValue: '71854001', codingSchemeDesignator: 'SCT', codeMeaning: 'Colon', paired: false };
  const unpaired = await writeObject(sampleInput(jpeg, 64, 48, { anatomicRegion: colon }));
  const unpairedWarnings = await expectValid(t, unpaired);
  t.notOk(unpairedWarnings.some((line) => line.includes('Laterality')), 'no Laterality warning for an unpaired region');
  t.same(await laterality(unpaired), { present: false, value: null }, 'Laterality absent for colon');

  const kidney = { codeValue: '64033007', codingSchemeDesignator: 'SCT', codeMeaning: 'Kidney', paired: true };
  const paired = await writeObject(sampleInput(jpeg, 64, 48, { anatomicRegion: kidney, laterality: 'L' }));
  await expectValid(t, paired);
  t.same(await laterality(paired), { present: true, value: 'L' }, 'Laterality L for the left kidney');

  const unknown = await writeObject(sampleInput(jpeg, 64, 48));
  t.same(await laterality(unknown), { present: true, value: null }, 'Laterality empty when the region is unknown');

  t.throws(() => buildVlEndoscopicImage(sampleInput(jpeg, 64, 48, { anatomicRegion: colon, laterality: 'R' })), {
    code: 'DICOM_BUILD_FAILED',
    message: 'invalid Laterality: the anatomic region is not a paired body part',
  });
});

t.test('text longer than its VR is rejected without its value', async (t) => {
  const base = sampleInput(jpeg, 64, 48);
  const longId = 'X'.repeat(65);
  const error = captureError(() => buildVlEndoscopicImage({ ...base, study: { ...base.study, patientId: longId } }));
  t.type(error, EndocapError);
  t.equal(error?.code, 'DICOM_BUILD_FAILED');
  t.equal(error?.message, 'invalid PatientID: 65 bytes as UTF-8, more than the 64 allowed by VR LO');

  // 33 characters but 65 bytes as UTF-8.
  const longName = `${'Ü'.repeat(16)}^${'ö'.repeat(16)}`;
  const nameError = captureError(() => buildVlEndoscopicImage({ ...base, study: { ...base.study, patientName: longName } }));
  t.equal(nameError?.message, 'invalid PatientName: 65 bytes as UTF-8, more than the 64 allowed by VR PN');
  t.notMatch(nameError?.message ?? '', /Ü/, 'value not in the message');

  const backslash = captureError(() => buildVlEndoscopicImage({ ...base, study: { ...base.study, accessionNumber: 'A\\B' } }));
  t.equal(backslash?.message, 'invalid AccessionNumber: contains a backslash, which separates values');

  const birthDate = captureError(() => buildVlEndoscopicImage({ ...base, study: { ...base.study, patientBirthDate: '1970-01-02' } }));
  t.equal(birthDate?.message, 'invalid PatientBirthDate: expected a date as YYYYMMDD');

  const uid = captureError(() => buildVlEndoscopicImage({ ...base, sopInstanceUid: '1.2.03' }));
  t.equal(uid?.message, 'invalid SOPInstanceUID: expected a UID of at most 64 digits and dots');
});

t.test('64 bytes of non-ASCII text fit an LO value', async (t) => {
  const base = sampleInput(jpeg, 64, 48);
  const file = await writeObject({ ...base, station: { ...base.station, institutionName: 'é'.repeat(32) } });
  await expectValid(t, file);
  t.throws(() => buildVlEndoscopicImage({ ...base, station: { ...base.station, institutionName: 'é'.repeat(33) } }), {
    message: 'invalid InstitutionName: 66 bytes as UTF-8, more than the 64 allowed by VR LO',
  });
});

t.test('non-baseline JPEG is rejected', async (t) => {
  const ppm = path.join(dir, 'image-64x48.ppm');
  const progressiveFile = path.join(dir, 'progressive.jpg');
  await run('cjpeg', ['-progressive', '-outfile', progressiveFile, ppm]);
  const progressive = await readFile(progressiveFile);
  t.throws(() => buildVlEndoscopicImage(sampleInput(progressive, 64, 48)), {
    code: 'DICOM_BUILD_FAILED',
    message: 'invalid pixel data: expected a baseline JPEG (SOI then SOF0)',
  });
  t.throws(() => buildVlEndoscopicImage(sampleInput(Buffer.from('not a jpeg'), 64, 48)), { code: 'DICOM_BUILD_FAILED' });
});

t.test('meta header matches what was built', async (t) => {
  const input = sampleInput(jpeg, 64, 48);
  const metadata = readObjectMetadata(buildVlEndoscopicImage(input));
  t.same(metadata, {
    sopClassUid: VL_ENDOSCOPIC_IMAGE_STORAGE,
    sopInstanceUid: input.sopInstanceUid,
    transferSyntaxUid: JPEG_BASELINE_TRANSFER_SYNTAX,
  });
});

function captureError(action: () => unknown): EndocapError | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof EndocapError) return error;
    throw error;
  }
  return undefined;
}
