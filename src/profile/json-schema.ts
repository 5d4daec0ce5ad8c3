import { z } from 'zod';
import { profileSchema } from './schema.js';

/** A JSON Schema node as `z.toJSONSchema` writes it: everything inlined, no `$ref`. */
export interface JsonSchema {
  type?: string;
  description?: string;
  default?: unknown;
  const?: unknown;
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
}

/** Returns the JSON Schema of profile files as written, where fields with defaults are optional. */
export function profileJsonSchema(): Record<string, unknown> {
  return {
    $id: 'https://endocap.invalid/hw-profile.schema.json',
    title: 'endocap hardware profile',
    ...z.toJSONSchema(profileSchema, { io: 'input', target: 'draft-2020-12' }),
  };
}

/**
 * Returns the variants of a discriminated union of objects with the value of
 * their `kind` property, or undefined when the node is not such a union.
 */
export function kindVariants(node: JsonSchema): Array<{ kind: string; schema: JsonSchema }> | undefined {
  const options = node.oneOf ?? node.anyOf;
  if (!options || options.length === 0) return undefined;
  const variants: Array<{ kind: string; schema: JsonSchema }> = [];
  for (const option of options) {
    const kind = option.properties?.['kind']?.const;
    if (option.type !== 'object' || typeof kind !== 'string') return undefined;
    variants.push({ kind, schema: option });
  }
  return variants;
}

/** Facts about one field that the loader uses: its path, and how its value is read. */
interface FieldFacts {
  /** Dotted path with `[]` for list items, such as `destinations[].tls.caFile`. */
  path: string;
  nullable: boolean;
  /** A file or folder name, resolved relative to the profile file that sets it. */
  isPath: boolean;
}

/** True for the fields that name a file or folder: spool.directory, stateDirectory and every key ending in `File`. */
export function isPathField(path: string): boolean {
  const key = path.slice(path.lastIndexOf('.') + 1);
  return path === 'spool.directory' || path === 'stateDirectory' || /[a-z]File$/.test(key);
}

function collectFields(node: JsonSchema, path: string, into: Map<string, FieldFacts>): void {
  if (path !== '') {
    const previous = into.get(path);
    const nullable = (node.anyOf ?? []).some((option) => option.type === 'null');
    into.set(path, { path, nullable: nullable || (previous?.nullable ?? false), isPath: isPathField(path) });
  }
  const variants = kindVariants(node);
  if (variants) {
    for (const variant of variants) collectFields(variant.schema, path, into);
    return;
  }
  for (const [key, child] of Object.entries(node.properties ?? {})) collectFields(child, path === '' ? key : `${path}.${key}`, into);
  if (node.type === 'array' && node.items) collectFields(node.items, `${path}[]`, into);
}

let cachedFields: Map<string, FieldFacts> | undefined;

/** Returns every field of the profile schema, keyed by dotted path; the fields of all variants of a union are included. */
export function profileFields(): Map<string, FieldFacts> {
  if (!cachedFields) {
    cachedFields = new Map();
    // 'any' instead of throwing on a type JSON Schema cannot express, so that loading a profile never depends on it.
    const schema = z.toJSONSchema(profileSchema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'any' });
    collectFields(schema as JsonSchema, '', cachedFields);
  }
  return cachedFields;
}

/** Turns a document path such as `destinations.0.tls` into the schema path `destinations[].tls`. */
export function schemaPath(keys: readonly (string | number)[]): string {
  let result = '';
  for (const key of keys) {
    if (typeof key === 'number') result += '[]';
    else result += result === '' ? key : `.${key}`;
  }
  return result;
}
