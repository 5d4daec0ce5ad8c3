import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args);
}

/** Makes a self-signed CA certificate and key with the openssl CLI. */
export async function makeCa(directory: string, name: string): Promise<CertificateFiles> {
  const keyFile = path.join(directory, `${name}.key`);
  const certFile = path.join(directory, `${name}.pem`);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`]);
  return { certFile, keyFile };
}

/**
 * Makes a certificate signed by `ca`. `subjectAltName` is in openssl's form,
 * such as `DNS:pacs.test,IP:127.0.0.1`; `usage` is serverAuth or clientAuth.
 */
export async function makeSignedCertificate(
  directory: string,
  name: string,
  ca: CertificateFiles,
  options: { usage: 'serverAuth' | 'clientAuth'; subjectAltName?: string },
): Promise<CertificateFiles> {
  const keyFile = path.join(directory, `${name}.key`);
  const requestFile = path.join(directory, `${name}.csr`);
  const certFile = path.join(directory, `${name}.pem`);
  const extensionsFile = path.join(directory, `${name}.ext`);
  const extensions = [`extendedKeyUsage=${options.usage}`];
  if (options.subjectAltName) extensions.push(`subjectAltName=${options.subjectAltName}`);
  await writeFile(extensionsFile, `${extensions.join('\n')}\n`);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', requestFile, '-subj', `/CN=${name}`]);
  await openssl([
    'x509', '-req', '-in', requestFile, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial',
    '-out', certFile, '-days', '2', '-extfile', extensionsFile,
  ]);
  return { certFile, keyFile };
}
