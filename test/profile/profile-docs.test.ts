import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { z } from 'zod';
import { loadProfile } from '../../src/profile/load-profile.js';
import { extractReference, renderProfileReference, replaceReference } from '../../src/profile/profile-docs.js';
import { profileSchema } from '../../src/profile/schema.js';

const root = path.resolve(import.meta.dirname, '../..');

/**
 * Collects the dotted path of every leaf field by walking the zod schema
 * itself, not the JSON Schema the generator reads, so that a field the
 * generator skips is still caught.
 */
function leafPaths(schema: z.ZodType, fieldPath: string, into: Set<string>): void {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault) {
    leafPaths(schema.unwrap() as z.ZodType, fieldPath, into);
  } else if (schema instanceof z.ZodPipe) {
    leafPaths(schema.in as z.ZodType, fieldPath, into);
  } else if (schema instanceof z.ZodObject) {
    for (const [key, child] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
      leafPaths(child, fieldPath === '' ? key : `${fieldPath}.${key}`, into);
    }
  } else if (schema instanceof z.ZodArray && isStructured(schema.element as z.ZodType)) {
    leafPaths(schema.element as z.ZodType, `${fieldPath}[]`, into);
  } else if (schema instanceof z.ZodUnion && isStructured(schema)) {
    for (const option of schema.options as z.ZodType[]) leafPaths(option, fieldPath, into);
  } else {
    into.add(fieldPath);
  }
}

/** True for an object, or a union whose options are objects: schemas with fields of their own. */
function isStructured(schema: z.ZodType): boolean {
  if (schema instanceof z.ZodObject) return true;
  if (schema instanceof z.ZodUnion) return (schema.options as z.ZodType[]).every(isStructured);
  return false;
}

t.test('docs/profiles.md matches the schema', async (t) => {
  const document = await readFile(path.join(root, 'docs/profiles.md'), 'utf8');
  const reference = extractReference(document);
  t.ok(reference !== undefined, 'docs/profiles.md has the reference markers');
  t.equal(reference, renderProfileReference(), 'regenerate with: npm run profile:docs');
});

t.test('docs/profiles.md lists every field', async (t) => {
  const document = await readFile(path.join(root, 'docs/profiles.md'), 'utf8');
  const reference = extractReference(document) ?? '';
  const leaves = new Set<string>();
  leafPaths(profileSchema, '', leaves);
  t.ok(leaves.size > 150, `${leaves.size} leaf fields found in the schema`);
  for (const leaf of [...leaves].sort()) {
    t.ok(reference.includes(`| \`${leaf}\` |`), `${leaf} has a row; regenerate with: npm run profile:docs`);
  }
});

t.test('profile reference has kind tables', async (t) => {
  const reference = renderProfileReference();
  for (const heading of [
    '#### `footswitch` with kind `serial`',
    '#### `footswitch.protocol` with kind `modem`',
    '#### `destinations[]` with kind `dicom`',
    '#### `destinations[]` with kind `stow-rs`',
    '#### `destinations[].auth` with kind `bearer`',
  ]) {
    t.ok(reference.includes(`\n${heading}\n`), heading);
  }
  t.match(reference, '| `destinations[].port` | integer, 1 to 65535 | yes |  | TCP port of the DICOM peer. |');
  t.match(reference, '| `video.reopen` | mapping | no | `{ initialMs: 500, maxMs: 10000, multiplier: 2 }` |');
  t.match(reference, /\| `worklist\.modality` \| string, matching `[^`]+` or null \| no \| `ES` \|/);
});

t.test('profile reference replaced between markers', async (t) => {
  const document = await readFile(path.join(root, 'docs/profiles.md'), 'utf8');
  const updated = replaceReference(document, 'NEW\n');
  t.ok(updated !== undefined);
  t.equal(extractReference(updated ?? ''), 'NEW\n');
  t.equal(updated?.slice(0, 200), document.slice(0, 200), 'prose before the markers kept');
  t.equal(replaceReference('no markers', 'NEW\n'), undefined);
});

t.test('docs/profiles.md examples are valid', async (t) => {
  const document = await readFile(path.join(root, 'docs/profiles.md'), 'utf8');
  const examples = [...document.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
  t.ok(examples.length >= 2, 'the page has its examples');

  // Each example sits beside a copy of the shipped bases, as in hw-profiles/.
  const directory = t.testdir({});
  await cp(path.join(root, 'hw-profiles/base'), path.join(directory, 'base'), { recursive: true });
  for (const [index, example] of examples.entries()) {
    const file = path.join(directory, `example-${index}.yaml`);
    await writeFile(file, example);
    await t.resolves(loadProfile(file), `example ${index + 1} loads`);
  }
});
