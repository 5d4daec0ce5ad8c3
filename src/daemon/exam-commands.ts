import { z } from 'zod';
import type { CommandRegistry } from '../telemetry/commands.js';
import { discontinuationReasons, type DiscontinuationReason } from '../worklist/mpps-dataset.js';
import type { ExamManager } from './exam-manager.js';

const reasonNames = Object.keys(discontinuationReasons) as [DiscontinuationReason, ...DiscontinuationReason[]];

/** Arguments of ending an exam, shared by the remote command and the control socket. */
export const endExamArgsSchema = z.strictObject({
  discontinue: z.boolean().optional().describe('End as DISCONTINUED even when objects were captured.'),
  reason: z.enum(reasonNames).optional().describe('Discontinuation reason, sent in the MPPS (CID 9300).'),
});

const selectResultSchema = z.object({ examId: z.string(), alreadyOpen: z.boolean(), endedExamId: z.string().optional() });
const endResultSchema = z.object({ examId: z.string(), outcome: z.enum(['completed', 'discontinued']), objects: z.number().int().nonnegative() });

/**
 * Registers the exam commands over the telemetry's placeholders. Results carry
 * internal exam ids and counts only; the accession number of a request is never
 * sent back, and errors do not quote it.
 */
export function registerExamCommands(registry: CommandRegistry, exams: ExamManager): void {
  registry.register('select-procedure', {
    description: 'Selects the worklist procedure with this accession number and opens its exam; an exam open with another procedure is ended first.',
    access: 'operator',
    args: z.strictObject({ accessionNumber: z.string().min(1).max(64) }),
    result: selectResultSchema,
    // A selection with no match queries the worklist once more, bounded by its query timeout.
    timeoutMs: 120_000,
    handler: (args) => exams.select({ value: args.accessionNumber, by: ['accession-number'], source: 'mqtt' }),
  });

  registry.register('end-exam', {
    description: 'Ends the open exam: COMPLETED in the MPPS when objects were captured, DISCONTINUED otherwise or when discontinue is true.',
    access: 'operator',
    args: endExamArgsSchema,
    result: endResultSchema,
    // A clip being recorded is closed and stored first.
    timeoutMs: 60_000,
    handler: (args) => exams.end({ source: 'mqtt', ...args }),
  });
}
