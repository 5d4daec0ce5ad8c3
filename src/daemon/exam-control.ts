import { z } from 'zod';
import { EndocapError, ErrorCodes } from '../errors.js';
import type { Hl7Status } from '../hl7/hl7-order-service.js';
import type { BarcodeScannerStatus } from '../worklist/barcode-scanner.js';
import type { MppsSenderStatus } from '../worklist/mpps-sender.js';
import type { WorklistEntry } from '../worklist/worklist-entry.js';
import type { WorklistStatus, WorklistUpdated } from '../worklist/worklist-service.js';
import { endExamArgsSchema } from './exam-commands.js';
import type { EndResult, ExamStatus, SelectResult } from './exam-manager.js';
import type { ExamWorkflow } from './exam-workflow.js';

/*
 * Control socket requests of the exam workflow (protocol in control-server.ts):
 *   {"command":"exam-start","accessionNumber":"..."}  or  {"command":"exam-start","patientId":"..."}
 *     → SelectResult: {"examId","alreadyOpen","endedExamId"?}
 *   {"command":"exam-end","discontinue":false,"reason":"unspecified"}   both optional
 *     → EndResult: {"examId","outcome":"completed"|"discontinued","objects"}
 *   {"command":"exam-status"}
 *     → {"exam":ExamStatus,"worklist"?:WorklistStatus,"mpps"?:MppsSenderStatus,"barcode"?:BarcodeScannerStatus,"hl7"?:Hl7Status}
 *   {"command":"worklist-refresh"}  → WorklistUpdated: counts and warning codes of the query
 *   {"command":"worklist-list"}     → {"fetchedAt"?,"entries":[WorklistEntry],"orders"?:[WorklistEntry]}: worklist entries, and open HL7 orders
 * Only worklist-list returns patient data: the socket is local to the box, mode 0660.
 */

export const examControlRequestSchemas = [
  z
    .strictObject({ command: z.literal('exam-start'), accessionNumber: z.string().min(1).max(64).optional(), patientId: z.string().min(1).max(64).optional() })
    .refine((request) => (request.accessionNumber === undefined) !== (request.patientId === undefined), 'exactly one of accessionNumber and patientId'),
  endExamArgsSchema.extend({ command: z.literal('exam-end') }),
  z.strictObject({ command: z.literal('exam-status') }),
  z.strictObject({ command: z.literal('worklist-refresh') }),
  z.strictObject({ command: z.literal('worklist-list') }),
] as const;

export type ExamControlRequest = z.infer<(typeof examControlRequestSchemas)[number]>;

export interface ExamControlStatus {
  exam: ExamStatus;
  worklist?: WorklistStatus;
  mpps?: MppsSenderStatus;
  barcode?: BarcodeScannerStatus;
  /** Listener counters and the number of open orders; no order content. */
  hl7?: Hl7Status;
}

export interface ExamControlResults {
  'exam-start': SelectResult;
  'exam-end': EndResult;
  'exam-status': ExamControlStatus;
  'worklist-refresh': WorklistUpdated;
  'worklist-list': { fetchedAt?: string; entries: WorklistEntry[]; orders?: WorklistEntry[] };
}

/** Runs one exam request of the control socket. */
export async function runExamControl(workflow: ExamWorkflow | undefined, request: ExamControlRequest): Promise<ExamControlResults[ExamControlRequest['command']]> {
  const exams = workflow?.exams;
  if (!workflow || !exams) throw new EndocapError(ErrorCodes.WORKLIST_NOT_CONFIGURED, 'the exam workflow is not running');
  switch (request.command) {
    case 'exam-start':
      return request.accessionNumber !== undefined
        ? exams.select({ value: request.accessionNumber, by: ['accession-number'], source: 'control' })
        : exams.select({ value: request.patientId ?? '', by: ['patient-id'], source: 'control' });
    case 'exam-end':
      return exams.end({ source: 'control', ...(request.discontinue === undefined ? {} : { discontinue: request.discontinue }), ...(request.reason === undefined ? {} : { reason: request.reason }) });
    case 'exam-status': {
      const status: ExamControlStatus = { exam: exams.status() };
      if (workflow.worklist) status.worklist = workflow.worklist.status();
      if (workflow.mppsSender) status.mpps = workflow.mppsSender.status();
      if (workflow.scanner) status.barcode = workflow.scanner.status();
      if (workflow.hl7) status.hl7 = workflow.hl7.status();
      return status;
    }
    case 'worklist-refresh': {
      const worklist = requireWorklist(workflow);
      const result = await worklist.refresh();
      return { entries: result.entries.length, matches: result.matches, malformed: result.malformed, truncated: result.truncated, warnings: result.warnings, durationMs: result.durationMs };
    }
    case 'worklist-list': {
      const { worklist, hl7 } = workflow;
      if (!worklist && !hl7) requireWorklist(workflow);
      const fetchedAt = worklist?.status().fetchedAt;
      return {
        ...(fetchedAt === undefined ? {} : { fetchedAt }),
        entries: [...(worklist?.entries ?? [])],
        ...(hl7 ? { orders: [...hl7.entries] } : {}),
      };
    }
  }
}

function requireWorklist(workflow: ExamWorkflow): NonNullable<ExamWorkflow['worklist']> {
  if (!workflow.worklist) throw new EndocapError(ErrorCodes.WORKLIST_NOT_CONFIGURED, 'no worklist is configured on this box');
  return workflow.worklist;
}
