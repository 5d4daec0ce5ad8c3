import { z } from 'zod';

/**
 * Profile sections about what stills and clips contain: the image area,
 * masked rectangles, how the still frame is chosen, and how clips are
 * recorded and encoded. `schema.ts` puts them into the profile.
 */

const MIB = 1024 ** 2;

const pixel = z.number().int().min(0).max(8192);

export const rectangleSchema = z
  .strictObject({
    x: pixel.describe('Left edge in pixels of the source frame.'),
    y: pixel.describe('Top edge in pixels of the source frame.'),
    width: z.number().int().min(2).max(8192).describe('Width in pixels.'),
    height: z.number().int().min(2).max(8192).describe('Height in pixels.'),
  })
  .describe('Rectangle in pixels of the source frame, origin at the top left.');

/**
 * Even numbers only: 4:2:0 video stores one chroma sample per 2x2 pixels, so
 * an odd edge would split a chroma sample and H.264 needs even sizes.
 */
const cropSchema = rectangleSchema.superRefine((crop, context) => {
  for (const key of ['x', 'y', 'width', 'height'] as const) {
    if (crop[key] % 2 !== 0) {
      context.addIssue({ code: 'custom', path: [key], message: 'an even number, because 4:2:0 video needs even crop edges' });
    }
  }
});

export const imageSchema = z
  .strictObject({
    crop: cropSchema.optional().describe('Endoscopic area kept in stills and clips; the whole frame when absent.'),
    masks: z
      .array(rectangleSchema)
      .max(32)
      .default([])
      .describe('Rectangles painted black in stills and clips, such as the on-screen text panel; applied before the crop.'),
    textRemovedByMasks: z
      .boolean()
      .default(false)
      .describe('True when the crop and masks remove every burned-in text from the picture: objects then carry BurnedInAnnotation NO instead of YES.'),
  })
  .superRefine((image, context) => {
    if (image.textRemovedByMasks && image.crop === undefined && image.masks.length === 0) {
      context.addIssue({
        code: 'custom',
        path: ['textRemovedByMasks'],
        message: 'false, or a crop or at least one mask, because nothing removes the on-screen text otherwise',
      });
    }
  })
  .describe('What stills and clips show of the video frame.');

export const imageDefaults = { masks: [], textRemovedByMasks: false };

export const stillSelectionSchema = z
  .enum(['on-screen', 'sharpest'])
  .describe('Frame used for a still: the one on screen at the press, or the sharpest one within sharpestWindowMs around it.');

export const clipEncoderSchema = z
  .strictObject({
    codec: z
      .enum(['libx264', 'h264_vaapi', 'h264_qsv', 'h264_v4l2m2m'])
      .default('libx264')
      .describe('H.264 encoder. A hardware encoder that is missing or fails to open is replaced by libx264, and a log line says so.'),
    device: z.string().min(1).optional().describe('Hardware device for h264_vaapi or h264_qsv, such as /dev/dri/renderD128; the first one found when absent.'),
    preset: z
      .enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium'])
      .default('veryfast')
      .describe('libx264 speed preset: faster presets cost less CPU and give larger clips at the same quality.'),
    crf: z.number().int().min(0).max(51).default(23).describe('libx264 constant rate factor (quality; lower is better and larger). Ignored when bitRate is set.'),
    bitRate: z
      .number()
      .int()
      .min(100_000)
      .max(50_000_000)
      .optional()
      .describe('Target bit rate in bits per second, instead of crf; hardware encoders use it, or 8 Mb/s when absent.'),
    keyFrameIntervalSeconds: z
      .number()
      .min(0.2)
      .max(10)
      .default(1)
      .describe('Seconds between key frames. Clips start on a key frame, so the pre-record is up to this much longer than asked.'),
    threads: z.number().int().min(0).max(16).default(0).describe('Encoder threads; 0 lets the encoder choose.'),
  })
  .describe('Encoder of the continuous pre-record stream.');

export const clipEncoderDefaults = { codec: 'libx264', preset: 'veryfast', crf: 23, keyFrameIntervalSeconds: 1, threads: 0 } as const;

export const codedRegionSchema = z
  .strictObject({
    codeValue: z.string().min(1).max(64).describe('Code Value (0008,0100), such as 71854001.'),
    codingSchemeDesignator: z.string().min(1).max(16).default('SCT').describe('Coding Scheme Designator (0008,0102); SCT is SNOMED CT.'),
    codeMeaning: z.string().min(1).max(64).describe('Code Meaning (0008,0104), such as Colon.'),
    paired: z.boolean().default(false).describe('True for a paired body part, which then needs Laterality.'),
  })
  .describe('Coded anatomic region, such as SCT 71854001 "Colon".');

/**
 * SCT 38266002 "Entire body": the Video Endoscopic Image requires an anatomic
 * region (PS3.3 C.8.12.1), and this one is true whatever the scope examines.
 */
export const defaultClipRegion = { codeValue: '38266002', codingSchemeDesignator: 'SCT', codeMeaning: 'Entire body', paired: false };

export const clipSchema = z
  .strictObject({
    preRecordSeconds: z.number().min(0).max(60).default(5).describe('Seconds of video before the press that each clip includes.'),
    maxSeconds: z
      .number()
      .min(1)
      .max(3_600)
      .default(300)
      .describe('Longest clip in seconds, pre-record included; a longer recording continues in a new clip.'),
    maxRingBytes: z
      .number()
      .int()
      .min(MIB)
      .max(1024 * MIB)
      .default(64 * MIB)
      .describe('Memory for the pre-record stream in bytes; when it is full, the oldest seconds are dropped and the pre-record gets shorter.'),
    passthrough: z
      .boolean()
      .default(true)
      .describe('Copy H.264 from a source that already delivers it, without re-encoding, when it fits a DICOM transfer syntax and no crop or mask is set.'),
    encoder: clipEncoderSchema.default(clipEncoderDefaults),
    anatomicRegion: codedRegionSchema
      .default(defaultClipRegion)
      .describe('AnatomicRegionSequence of clips, which the Video Endoscopic Image requires; set it to what the room examines.'),
  })
  .describe('Video clips: a pedal gesture mapped to clip starts one and the same gesture again stops it.');

export const clipDefaults = { preRecordSeconds: 5, maxSeconds: 300, maxRingBytes: 64 * MIB, passthrough: true, encoder: clipEncoderDefaults, anatomicRegion: defaultClipRegion };

export type Rectangle = z.infer<typeof rectangleSchema>;
export type ImageConfig = z.infer<typeof imageSchema>;
export type StillSelection = z.infer<typeof stillSelectionSchema>;
export type ClipConfig = z.infer<typeof clipSchema>;
export type ClipEncoderConfig = z.infer<typeof clipEncoderSchema>;
