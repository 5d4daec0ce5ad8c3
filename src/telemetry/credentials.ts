import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EndocapError, ErrorCodes } from '../errors.js';
import type { MqttConfig } from '../profile/schema.js';

/**
 * Broker credentials file: YAML (or JSON) with `username` and `password`,
 * readable by the daemon's user only. Its content never appears in a log line
 * or an error message; errors name the file and the field.
 */
const credentialsSchema = z.strictObject({
  username: z.string().min(1),
  password: z.string(),
});

export type BrokerCredentials = z.infer<typeof credentialsSchema>;

export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export async function readCredentials(file: string): Promise<BrokerCredentials> {
  const text = await readConfigFile(file, 'credentialsFile');
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch {
    throw new EndocapError(ErrorCodes.MQTT_CONFIG_INVALID, `${file}: not valid YAML or JSON; expected "username: ..." and "password: ..."`);
  }
  const parsed = credentialsSchema.safeParse(document);
  if (!parsed.success) {
    // Paths and zod's wording only: a message quoting the value could print the password.
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top level)'}: ${issue.code === 'unrecognized_keys' ? 'unknown key' : 'missing or not a string'}`);
    throw new EndocapError(ErrorCodes.MQTT_CONFIG_INVALID, `${file}: ${problems.join('; ')}; expected "username: ..." and "password: ..."`);
  }
  return parsed.data;
}

/** Reads the PEM files named in the profile's mqtt.tls section. */
export async function readTlsFiles(tls: NonNullable<MqttConfig['tls']>): Promise<TlsFiles> {
  const files: TlsFiles = {};
  if (tls.caFile) files.ca = Buffer.from(await readConfigFile(tls.caFile, 'tls.caFile'));
  if (tls.certFile) files.cert = Buffer.from(await readConfigFile(tls.certFile, 'tls.certFile'));
  if (tls.keyFile) files.key = Buffer.from(await readConfigFile(tls.keyFile, 'tls.keyFile'));
  return files;
}

async function readConfigFile(file: string, setting: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    throw new EndocapError(ErrorCodes.MQTT_CONFIG_INVALID, `mqtt.${setting} ${file} cannot be read (${code})`, { cause: error });
  }
}
