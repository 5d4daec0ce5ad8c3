import t from 'tap';
import {
  chooseH264TransferSyntax,
  MPEG4_HIGH_PROFILE_LEVEL_41,
  MPEG4_HIGH_PROFILE_LEVEL_42_2D,
  requiredH264Level,
  type H264StreamFacts,
} from '../../src/dicom/video-transfer-syntax.js';

function facts(overrides: Partial<H264StreamFacts> = {}): H264StreamFacts {
  return {
    profileIdc: 100,
    levelIdc: 41,
    chromaFormatIdc: 1,
    bitDepthLuma: 8,
    bitDepthChroma: 8,
    width: 1920,
    height: 1080,
    frameMbsOnly: true,
    frameSizeInMbs: 120 * 68,
    fullRange: false,
    frameRate: 30,
    ...overrides,
  };
}

t.test('transfer syntax follows the level', async (t) => {
  t.same(chooseH264TransferSyntax(facts()), { ok: true, transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41, name: 'MPEG-4 AVC/H.264 High Profile / Level 4.1' });
  const lower = chooseH264TransferSyntax(facts({ levelIdc: 31, width: 1280, height: 720, frameSizeInMbs: 80 * 45 }));
  t.same(lower, { ok: true, transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41, name: 'MPEG-4 AVC/H.264 High Profile / Level 4.1' }, 'a lower level is within 4.1');
  const sixty = chooseH264TransferSyntax(facts({ levelIdc: 42, frameRate: 60 }));
  t.same(sixty, { ok: true, transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_42_2D, name: 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video' });
  t.same(chooseH264TransferSyntax(facts({ frameRate: 30_000 / 1_001 })).ok, true, '29.97 frames per second');
  t.same(chooseH264TransferSyntax(facts({ frameRate: 25, aspectRatioIdc: 1 })).ok, true, 'square pixels declared');
});

const rejected: Array<[string, Partial<H264StreamFacts>, string]> = [
  ['baseline', { profileIdc: 66 }, 'profile_idc 66 is not High Profile (100)'],
  ['main', { profileIdc: 77 }, 'profile_idc 77 is not High Profile (100)'],
  ['level 5.1', { levelIdc: 51 }, 'level 5.1 is above 4.2, the highest level of the H.264 transfer syntaxes'],
  ['4:2:2', { chromaFormatIdc: 2 }, 'samples are not 8-bit 4:2:0, which YBR_PARTIAL_420 requires'],
  ['10-bit', { bitDepthLuma: 10 }, 'samples are not 8-bit 4:2:0, which YBR_PARTIAL_420 requires'],
  ['full range', { fullRange: true }, 'samples are full range, but YBR_PARTIAL_420 is limited range'],
  ['non-square pixels', { aspectRatioIdc: 14 }, 'pixels are not square (aspect_ratio_idc 14)'],
  ['24 fps', { frameRate: 24 }, 'frame rate 24 is not 25, 29.97, 30, 50, 59.94 or 60 frames per second'],
  ['unknown rate', { frameRate: 0 }, 'frame rate is unknown'],
  ['1080p60 at level 4.1', { frameRate: 60 }, '1920x1080 at 60 frames per second exceeds MPEG-4 AVC/H.264 High Profile / Level 4.1'],
  ['4K at level 4.2', { levelIdc: 42, width: 3840, height: 2160, frameSizeInMbs: 240 * 135 }, 'frame size 3840x2160 exceeds MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video'],
];

for (const [name, overrides, reason] of rejected) {
  t.test(`transfer syntax rejects ${name}`, async (t) => {
    t.same(chooseH264TransferSyntax(facts(overrides)), { ok: false, reason });
  });
}

t.test('required level for encoders', async (t) => {
  t.equal(requiredH264Level(1920, 1080, 30), 41);
  t.equal(requiredH264Level(1920, 1080, 60), 42);
  t.equal(requiredH264Level(1280, 720, 60), 41);
  t.equal(requiredH264Level(320, 240, 25), 41);
  t.equal(requiredH264Level(3840, 2160, 30), undefined);
  t.equal(requiredH264Level(1920, 1080, 120), undefined);
});
