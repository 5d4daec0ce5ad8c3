import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { EndocapError, ErrorCodes } from '../errors.js';
import type { StowRsDestinationConfig } from '../profile/schema.js';

type AuthConfig = NonNullable<StowRsDestinationConfig['auth']>;

/** An Authorization header value and a hash of it, to notice a changed credential file without keeping a second copy of the secret. */
export interface Authorization {
  header: string;
  fingerprint: string;
}

/** RFC 6750 2.1 b64token: the only characters a bearer token may contain. */
const bearerToken = /^[A-Za-z0-9\-._~+/]+=*$/;

function invalid(message: string, cause?: unknown): EndocapError {
  // Retryable: an operator fixes the file while objects wait in the spool.
  return new EndocapError(ErrorCodes.DICOMWEB_CREDENTIALS_INVALID, message, { retryable: true, cause });
}

async function readSecretFile(setting: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    throw invalid(`auth.${setting} ${file} could not be read (${code})`, error);
  }
}

async function bearerHeader(file: string): Promise<string> {
  const token = (await readSecretFile('tokenFile', file)).trim();
  if (token === '') throw invalid(`auth.tokenFile ${file} is empty: write the bearer token into it`);
  if (!bearerToken.test(token)) {
    throw invalid(`auth.tokenFile ${file} contains characters not allowed in a bearer token (RFC 6750 2.1): write the token alone, on one line`);
  }
  return `Bearer ${token}`;
}

async function basicHeader(file: string): Promise<string> {
  const text = await readSecretFile('credentialsFile', file);
  let document: unknown;
  try {
    document = parse(text);
  } catch {
    // The parser's message may quote the line, and with it the password.
    throw invalid(`auth.credentialsFile ${file} is not valid YAML: expected "username: ..." and "password: ..."`);
  }
  const record = typeof document === 'object' && document !== null ? (document as Record<string, unknown>) : {};
  const { username, password } = record;
  if (typeof username !== 'string' || username === '') throw invalid(`auth.credentialsFile ${file}: username missing or not a string`);
  if (typeof password !== 'string') throw invalid(`auth.credentialsFile ${file}: password missing or not a string (quote it if it looks like a number)`);
  // RFC 7617 2: the user-id cannot contain a colon, and neither part may contain control characters.
  if (username.includes(':')) throw invalid(`auth.credentialsFile ${file}: username contains ":", which Basic authentication cannot carry`);
  if (/[\u0000-\u001f\u007f]/.test(username + password)) throw invalid(`auth.credentialsFile ${file}: username or password contains control characters`);
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

/**
 * Reads the credential file of a destination and returns the Authorization
 * header, or undefined when the destination has no authentication. Errors name
 * the file and the fix, never the secret.
 */
export async function readAuthorization(auth: AuthConfig | undefined): Promise<Authorization | undefined> {
  if (!auth) return undefined;
  const header = auth.kind === 'bearer' ? await bearerHeader(auth.tokenFile) : await basicHeader(auth.credentialsFile);
  return { header, fingerprint: createHash('sha256').update(header).digest('hex') };
}
