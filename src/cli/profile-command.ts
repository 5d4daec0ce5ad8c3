import { parseArgs } from 'node:util';
import { z } from 'zod';
import { EXIT_CONFIG, loadProfile, ProfileError } from '../profile/load-profile.js';
import { profileSchema } from '../profile/schema.js';

const HELP = `Usage: endocap profile check FILE
       endocap profile schema

check   Validates FILE and prints every problem as "FILE: path: message".
        Exit 0 when valid, 78 when not.
schema  Prints the JSON Schema of profiles (hw-profiles/profile.schema.json).`;

export async function runProfileCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { help: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const [subcommand, file] = positionals;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (subcommand === 'schema') {
    process.stdout.write(`${JSON.stringify(profileJsonSchema(), null, 2)}\n`);
    return 0;
  }
  if (subcommand === 'check' && file) {
    try {
      await loadProfile(file);
    } catch (error) {
      if (error instanceof ProfileError) {
        process.stderr.write(`${error.message}\n`);
        return EXIT_CONFIG;
      }
      throw error;
    }
    process.stdout.write(`${file}: valid\n`);
    return 0;
  }
  process.stderr.write(`endocap profile: expected "check FILE" or "schema"\n\n${HELP}\n`);
  return 64;
}

/** JSON Schema of profiles as an editor sees them: defaults make fields optional. */
export function profileJsonSchema(): Record<string, unknown> {
  return {
    $id: 'https://endocap.invalid/hw-profile.schema.json',
    title: 'endocap hardware profile',
    ...z.toJSONSchema(profileSchema, { io: 'input', target: 'draft-2020-12' }),
  };
}
