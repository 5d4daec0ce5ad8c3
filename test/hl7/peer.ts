import { execFile } from 'node:child_process';
import path from 'node:path';
import { PYTHON } from '../helpers/dicom-tools.js';

const script = path.join(import.meta.dirname, 'hl7_peer.py');

export type PeerStep =
  | { op: 'send'; message: string; encoding: 'utf-8' | 'latin-1' }
  | { op: 'split'; message: string; encoding: 'utf-8' | 'latin-1'; parts: number; pauseMs: number }
  | { op: 'raw'; hex: string; expectAck: boolean; waitMs?: number };

/** An ACK as python-hl7 parsed it; MSA-3 and ERR-8 come unescaped by the library. */
export interface PeerAck {
  raw: string;
  msh3: string;
  msh5: string;
  msh9: string;
  msh10: string;
  msh18: string;
  msa1: string;
  msa2: string;
  msa3: string;
  errCode?: string;
  errLocation?: string;
  errText?: string;
}

/**
 * Sends HL7 messages to 127.0.0.1:`port` with python-hl7 (an independent
 * implementation), all steps on one MLLP connection, and returns what came back.
 */
export function sendWithPythonHl7(port: number, steps: PeerStep[]): Promise<Array<{ ack: PeerAck | null; raw?: string }>> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, [script], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`hl7_peer.py failed: ${error.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as Array<{ ack: PeerAck | null; raw?: string }>);
    });
    child.stdin?.end(JSON.stringify({ host: '127.0.0.1', port, steps }));
  });
}

/** Joins segments with CR, the HL7 segment terminator. */
export function message(...segments: string[]): string {
  return segments.join('\r');
}

/** Returns an MSH segment of a message from the test's order placer. */
export function msh(type: string, controlId: string, characterSet = ''): string {
  return `MSH|^~\\&|RIS|HOSP|ENDOCAP|ENDO|20261204101500||${type}|${controlId}|P|2.5.1|||AL|NE||${characterSet}`;
}
