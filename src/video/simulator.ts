import { access, constants } from 'node:fs/promises';

/** Font of Debian's fonts-dejavu-core package, used by the simulator's text panel. */
export const DEFAULT_SIMULATOR_FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

const FONT_CANDIDATES = [
  DEFAULT_SIMULATOR_FONT,
  '/usr/share/fonts/TTF/DejaVuSans.ttf',
  '/usr/share/fonts/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf',
];

export interface SimulatorGraphOptions {
  width: number;
  height: number;
  frameRate: number;
  /** TrueType font for the text panel, or null for no panel. Defaults to DEFAULT_SIMULATOR_FONT. */
  fontFile?: string | null;
}

/**
 * Lines of the on-screen panel. Every value is made up: the simulator must
 * never show anything that could be taken for a real patient.
 */
const PANEL_LINES: readonly (string | { localtime: string })[] = [
  'DOE^JANE',
  'ID: SIM0004711',
  'F  1970-01-01',
  { localtime: '%F' },
  { localtime: '%T' },
  '',
  'GIF-SIM190',
  'S/N 2712345',
  'Eh:A5  Cm:1',
  'SIMULATOR',
];

/**
 * Builds a lavfi graph that looks like the output of an endoscopy video
 * processor: black frame, round moving image on the right, text panel with a
 * fake patient, clock and scope on the left. It ends in `realtime`, so the
 * source paces itself at `frameRate` like a capture card.
 */
export function simulatorGraph(options: SimulatorGraphOptions): string {
  const { width, height, frameRate } = options;
  const fontFile = options.fontFile === undefined ? DEFAULT_SIMULATOR_FONT : options.fontFile;
  const rate = String(frameRate);

  // The circle leaves at least 38 % of the width for the panel, and is a
  // multiple of 8 so that the quarter-size texture has even sides.
  const diameter = Math.max(8, Math.floor(Math.min(height * 0.94, width * 0.62) / 8) * 8);
  const texture = diameter / 4;
  const margin = Math.floor((height - diameter) / 2);
  const circleX = width - diameter - margin;
  const radius = diameter / 2;

  // The gradient is rendered at a quarter of the size and scaled up, because
  // it is smooth anyway. Measured with the FFmpeg 5.1 CLI on a 2-core x64 box,
  // full-size gradients took about 1.1 cores at 1080p30, quarter size 0.1.
  const content =
    `gradients=s=${texture}x${texture}:r=${rate}:c0=0x5a0c10:c1=0xb5463a:c2=0xe6957e:c3=0x8c2a24:c4=0xc8685a` +
    ':nb_colors=5:speed=0.01:type=radial,format=yuv420p,noise=c0s=12:c0f=t,' +
    `scale=${diameter}:${diameter}:flags=bicubic,vignette=angle=0.6[content]`;

  // The mask is computed once and repeated, because geq per frame is slow.
  const mask =
    `nullsrc=s=${diameter}x${diameter}:r=${rate},format=gray,trim=end_frame=1,` +
    `geq=lum='255*lte(hypot(X-${radius}+0.5\\,Y-${radius}+0.5)\\,${radius})',loop=loop=-1:size=1[mask]`;

  const screen =
    `[content][mask]alphamerge[scope];color=c=black:s=${width}x${height}:r=${rate}[background];` +
    `[background][scope]overlay=x=${circleX}:y=${margin}:format=yuv420`;

  const panel = fontFile === null ? '' : `,${panelFilter(fontFile, height)}`;
  return `${content};${mask};${screen}${panel},format=yuv420p,realtime`;
}

/** Returns the first readable font among common Linux font paths, or undefined. */
export async function findSimulatorFont(candidates: readonly string[] = FONT_CANDIDATES): Promise<string | undefined> {
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.R_OK);
      return candidate;
    } catch {
      // Not installed here: try the next one.
    }
  }
  return undefined;
}

function panelFilter(fontFile: string, height: number): string {
  const fontSize = Math.max(8, Math.round(height / 28));
  const text = PANEL_LINES.map((line) => (typeof line === 'string' ? escapeDrawtext(line) : `%{localtime:${line.localtime}}`)).join('\n');
  const options = [
    `fontfile=${escapeGraphValue(fontFile)}`,
    `fontsize=${fontSize}`,
    'fontcolor=white',
    `line_spacing=${Math.round(fontSize * 0.6)}`,
    `x=${fontSize}`,
    `y=${fontSize * 2}`,
    `text=${escapeGraphValue(text)}`,
  ];
  return `drawtext=${options.join(':')}`;
}

/** Escapes the characters that drawtext's own text expansion treats specially. */
function escapeDrawtext(text: string): string {
  return text.replace(/[\\%]/g, (character) => `\\${character}`);
}

/**
 * Escapes a filter option value for both levels a lavfi graph string is
 * parsed at: first the option list (`:` separates options), then the graph
 * (`,`, `;` and brackets separate filters and pads). Both levels treat
 * backslash and single quote as escape characters.
 */
function escapeGraphValue(value: string): string {
  const optionLevel = value.replace(/[\\':]/g, (character) => `\\${character}`);
  return optionLevel.replace(/[\\'[\],;]/g, (character) => `\\${character}`);
}
