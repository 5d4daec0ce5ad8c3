import { isPathField, kindVariants, profileJsonSchema, type JsonSchema } from './json-schema.js';

/** Lines around the generated reference in docs/profiles.md; only the text between them is generated. */
export const DOCS_BEGIN = '<!-- BEGIN field reference: generated from the schema by `npm run profile:docs`, do not edit -->';
export const DOCS_END = '<!-- END field reference -->';

interface Row {
  path: string;
  node: JsonSchema;
  required: boolean;
}

interface Table {
  heading: string;
  description: string | undefined;
  rows: Row[];
}

/** Largest integer zod writes as the maximum of an unbounded integer; not worth printing. */
const UNBOUNDED = Number.MAX_SAFE_INTEGER;

/**
 * Renders the field reference of profiles in Markdown: one section per
 * top-level key, one table row per field, and a table per kind of each
 * union (footswitch kinds, protocols, destination kinds).
 */
export function renderProfileReference(schema: JsonSchema = profileJsonSchema() as JsonSchema): string {
  const required = new Set(schema.required ?? []);
  const sections: string[] = [];
  for (const [key, node] of Object.entries(schema.properties ?? {})) {
    const tables: Table[] = [];
    const main: Table = { heading: `\`${key}\``, description: undefined, rows: [] };
    tables.push(main);
    addField(main, tables, key, node, required.has(key));
    sections.push(tables.map((table, index) => renderTable(table, index === 0 ? '###' : '####')).join('\n'));
  }
  return sections.join('\n');
}

function addField(table: Table, tables: Table[], path: string, node: JsonSchema, required: boolean): void {
  table.rows.push({ path, node, required });
  addChildren(table, tables, path, node);
}

function addChildren(table: Table, tables: Table[], path: string, node: JsonSchema): void {
  const variants = kindVariants(node);
  if (variants) {
    for (const variant of variants) {
      const variantTable: Table = { heading: `\`${path}\` with kind \`${variant.kind}\``, description: variant.schema.description, rows: [] };
      tables.push(variantTable);
      addProperties(variantTable, tables, path, variant.schema);
    }
    return;
  }
  if (node.type === 'array' && node.items) {
    addChildren(table, tables, `${path}[]`, node.items);
    return;
  }
  addProperties(table, tables, path, node);
}

function addProperties(table: Table, tables: Table[], path: string, node: JsonSchema): void {
  const required = new Set(node.required ?? []);
  for (const [key, child] of Object.entries(node.properties ?? {})) addField(table, tables, `${path}.${key}`, child, required.has(key));
}

function renderTable(table: Table, level: string): string {
  const lines = [`${level} ${table.heading}`, ''];
  if (table.description) lines.push(escapeHtml(table.description), '');
  lines.push('| field | type | required | default | description |', '|---|---|---|---|---|');
  for (const row of table.rows) {
    const cells = [`\`${row.path}\``, describeType(row.node), row.required ? 'yes' : 'no', describeDefault(row.node), describeField(row)];
    lines.push(`| ${cells.map(escapeCell).join(' | ')} |`);
  }
  lines.push('');
  return lines.join('\n');
}

function describeField(row: Row): string {
  const parts = [row.node.description ?? (row.path.endsWith('.kind') && row.node.const !== undefined ? 'Selects the fields of this table.' : '')];
  if (isPathField(row.path)) parts.push('A relative path is taken from the folder of the profile file that sets it.');
  return escapeHtml(parts.filter((part) => part !== '').join(' '));
}

/** Outside code spans, Markdown would take `<url>` or `<box id>` for an HTML tag. */
function escapeHtml(text: string): string {
  return text.replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function describeDefault(node: JsonSchema): string {
  return node.default === undefined ? '' : `\`${flowYaml(node.default)}\``;
}

/** Writes a value in YAML flow style, as it would be typed in a profile. */
function flowYaml(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(flowYaml).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).map(([key, child]) => `${key}: ${flowYaml(child)}`);
    return entries.length === 0 ? '{}' : `{ ${entries.join(', ')} }`;
  }
  if (typeof value === 'string' && /^[A-Za-z][A-Za-z0-9 _.-]*$/.test(value) && !/^(true|false|null|yes|no|on|off)$/i.test(value)) return value;
  return JSON.stringify(value);
}

function describeType(node: JsonSchema): string {
  const variants = kindVariants(node);
  if (variants) return `mapping; kind ${variants.map((variant) => `\`${variant.kind}\``).join(', ')} (tables below)`;
  if (node.const !== undefined) return `\`${flowYaml(node.const)}\``;
  if (node.enum) return `one of ${node.enum.map((value) => `\`${flowYaml(value)}\``).join(', ')}`;
  const options = node.anyOf ?? node.oneOf;
  if (options) return options.map(describeType).join(' or ');
  switch (node.type) {
    case 'string':
      return withLimits('string', [lengthLimit(node.minLength, node.maxLength, 'characters'), node.pattern === undefined ? '' : `matching \`${node.pattern}\``]);
    case 'integer':
    case 'number':
      return withLimits(node.type, [numberLimit(node)]);
    case 'array':
      return withLimits(`list of ${node.items ? describeType(node.items) : 'values'}`, [lengthLimit(node.minItems, node.maxItems, 'items')]);
    case 'object':
      if (typeof node.additionalProperties === 'object') return `mapping of string to ${describeType(node.additionalProperties)}`;
      return 'mapping';
    default:
      return node.type ?? 'any value';
  }
}

function withLimits(base: string, limits: string[]): string {
  const given = limits.filter((limit) => limit !== '');
  return given.length === 0 ? base : `${base}, ${given.join(', ')}`;
}

function lengthLimit(min: number | undefined, max: number | undefined, unit: string): string {
  if (min !== undefined && max !== undefined) return min === max ? `${min} ${unit}` : `${min} to ${max} ${unit}`;
  if (min === 1 && max === undefined) return 'not empty';
  if (min !== undefined) return min === 0 ? '' : `at least ${min} ${unit}`;
  if (max !== undefined) return `at most ${max} ${unit}`;
  return '';
}

function numberLimit(node: JsonSchema): string {
  const max = node.maximum !== undefined && node.maximum < UNBOUNDED ? node.maximum : undefined;
  if (node.minimum !== undefined && max !== undefined) return `${node.minimum} to ${max}`;
  const parts: string[] = [];
  if (node.minimum !== undefined) parts.push(`≥ ${node.minimum}`);
  if (node.exclusiveMinimum !== undefined) parts.push(`> ${node.exclusiveMinimum}`);
  if (max !== undefined) parts.push(`≤ ${max}`);
  if (node.exclusiveMaximum !== undefined) parts.push(`< ${node.exclusiveMaximum}`);
  return parts.join(', ');
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/**
 * Puts a freshly rendered reference between the markers of an existing
 * document, or returns undefined when the markers are missing.
 */
export function replaceReference(document: string, reference: string): string | undefined {
  const begin = document.indexOf(DOCS_BEGIN);
  const end = document.indexOf(DOCS_END);
  if (begin < 0 || end < begin) return undefined;
  return `${document.slice(0, begin)}${DOCS_BEGIN}\n\n${reference}\n${document.slice(end)}`;
}

/** Returns the text between the markers, or undefined when they are missing. */
export function extractReference(document: string): string | undefined {
  const begin = document.indexOf(DOCS_BEGIN);
  const end = document.indexOf(DOCS_END);
  if (begin < 0 || end < begin) return undefined;
  return document.slice(begin + DOCS_BEGIN.length + 2, end - 1);
}
