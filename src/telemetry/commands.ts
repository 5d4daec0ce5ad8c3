import { z } from 'zod';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import { isTopicLevel } from './topics.js';

/**
 * Broker ACL role allowed to send a command (docs/mqtt.md has the ACL lines).
 * A `monitor` command only reads, an `operator` command changes the delivery
 * queue or the current exam, and an `admin` command changes the running configuration.
 */
export type CommandAccess = 'monitor' | 'operator' | 'admin';

export interface CommandContext {
  /** Runs `action` after the response is published, such as a restart that would cut the connection. */
  afterResponse(action: () => void): void;
}

export interface CommandDefinition<Args extends z.ZodType, Result extends z.ZodType> {
  description: string;
  access: CommandAccess;
  /** Schema of the request's `args`; use a strict object so that a misspelt argument is an error. */
  args: Args;
  /** Schema of the result. Keys it does not list are dropped before publishing. */
  result: Result;
  handler: (args: z.output<Args>, context: CommandContext) => Promise<z.input<Result>> | z.input<Result>;
  /** Longest run before the command is answered with an error, in ms; 30 s when absent. */
  timeoutMs?: number;
  /** Marks a stand-in that answers COMMAND_UNAVAILABLE until the real command is registered over it. */
  placeholder?: boolean;
}

export type CommandOutcome =
  | { ok: true; result: unknown; afterResponse: Array<() => void> }
  | { ok: false; error: { code: string; message: string } };

export interface CommandSummary {
  name: string;
  description: string;
  access: CommandAccess;
}

interface RegisteredCommand extends CommandSummary {
  run(args: unknown, context: CommandContext): Promise<unknown>;
  timeoutMs: number;
  placeholder: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Named commands with validated arguments and results, independent of MQTT.
 * Components register their commands here (the daemon its built-in ones, the
 * exam workflow `select-procedure` and `end-exam`); telemetry serves them.
 */
export class CommandRegistry {
  private readonly commands = new Map<string, RegisteredCommand>();

  /** Adds a command, replacing a placeholder of that name. Throws when the name is taken or cannot be a topic level. */
  register<Args extends z.ZodType, Result extends z.ZodType>(name: string, definition: CommandDefinition<Args, Result>): void {
    if (!isTopicLevel(name)) throw new Error(`command name "${name}" must be letters, digits, dot, dash or underscore`);
    const existing = this.commands.get(name);
    if (existing && definition.placeholder) return;
    if (existing && !existing.placeholder) throw new Error(`command "${name}" is already registered`);
    this.commands.set(name, {
      name,
      description: definition.description,
      access: definition.access,
      timeoutMs: definition.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      placeholder: definition.placeholder ?? false,
      run: async (rawArgs, context) => {
        const parsed = definition.args.safeParse(rawArgs);
        if (!parsed.success) throw new EndocapError(ErrorCodes.COMMAND_INVALID, `invalid args: ${describeIssues(parsed.error)}`);
        const result = await definition.handler(parsed.data, context);
        return definition.result.parse(result);
      },
    });
  }

  /** Removes a command, for a component that stops. */
  unregister(name: string): void {
    this.commands.delete(name);
  }

  has(name: string): boolean {
    return this.commands.has(name);
  }

  list(): CommandSummary[] {
    return [...this.commands.values()].map(({ name, description, access }) => ({ name, description, access })).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Runs a command. It never throws: every failure becomes an error outcome with a stable code. */
  async run(name: string, args: unknown): Promise<CommandOutcome> {
    const command = this.commands.get(name);
    if (!command) {
      const known = this.list().map((summary) => summary.name).join(', ');
      return failure(ErrorCodes.COMMAND_UNKNOWN, `unknown command "${printable(name)}"; available: ${known || 'none'}`);
    }
    const afterResponse: Array<() => void> = [];
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new EndocapError(ErrorCodes.COMMAND_FAILED, `${name} did not finish within ${command.timeoutMs} ms`)), command.timeoutMs);
      });
      const result = await Promise.race([command.run(args, { afterResponse: (action) => afterResponse.push(action) }), timeout]);
      return { ok: true, result, afterResponse };
    } catch (error) {
      if (error instanceof EndocapError) return failure(error.code, error.message);
      if (error instanceof z.ZodError) return failure(ErrorCodes.COMMAND_FAILED, `${name} produced an invalid result: ${describeIssues(error)}`);
      return failure(ErrorCodes.COMMAND_FAILED, `${name} failed: ${errorMessage(error)}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

function failure(code: string, message: string): CommandOutcome {
  return { ok: false, error: { code, message } };
}

/** Lists zod issues by path and message only: the rejected values are not repeated, whatever they contain. */
function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.map(String).join('.') || '(args)'}: ${issue.message}`).join('; ');
}

/** Shortens a name taken from a topic and keeps only safe characters, for error messages. */
function printable(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '?');
  return safe.length > 64 ? `${safe.slice(0, 61)}...` : safe;
}
