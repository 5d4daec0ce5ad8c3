import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderConformanceMarkdown } from '../conformance/conformance-markdown.js';
import { buildConformanceStatement } from '../conformance/conformance-statement.js';
import { EXIT_CODES_HELP, loadCommandProfile, parseCommand, usage } from './command-line.js';

/** The simulator profile shipped with endocap; docs/conformance-statement.md is generated from it. */
export const SIMULATOR_PROFILE = fileURLToPath(new URL('../../hw-profiles/simulator.yaml', import.meta.url));

const HELP = `Usage: endocap conformance [--profile FILE] [--format markdown|json]

Prints the DICOM Conformance Statement (structure of DICOM PS3.2) of endocap
configured by a profile: network services, SOP classes and roles, proposed
and accepted presentation contexts, association policies, configured peers,
character sets and security. The tables are the ones endocap negotiates with.

Options:
  --profile FILE       Hardware profile (default: the simulator profile,
                       ${SIMULATOR_PROFILE}).
  --format FORMAT      markdown (default) or json.
  --help               Print this help.

${EXIT_CODES_HELP}`;

export async function runConformanceCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('conformance', HELP, () =>
    parseArgs({
      args: argv,
      options: { profile: { type: 'string', default: SIMULATOR_PROFILE }, format: { type: 'string', default: 'markdown' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length > 0) return usage('conformance', `unexpected argument "${parsed.positionals[0]}"`, HELP);
  const format = parsed.values.format;
  if (format !== 'markdown' && format !== 'json') return usage('conformance', `invalid --format "${format}": expected markdown or json`, HELP);

  const profile = await loadCommandProfile(parsed.values.profile);
  if (typeof profile === 'number') return profile;

  const statement = buildConformanceStatement(profile);
  process.stdout.write(format === 'json' ? `${JSON.stringify(statement, null, 2)}\n` : renderConformanceMarkdown(statement));
  return 0;
}
