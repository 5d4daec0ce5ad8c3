import { createHash } from 'node:crypto';
import { z } from 'zod';
import { EndocapError, ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import { echo } from '../pacs/store-scu.js';
import { loadProfile, ProfileError } from '../profile/load-profile.js';
import { dicomDestinations, type Profile } from '../profile/schema.js';
import { retryObjects } from '../spool/queue-operations.js';
import type { Spool } from '../spool/spool.js';
import type { CommandRegistry } from '../telemetry/commands.js';
import { statusPayloadSchema, type StatusPayload } from '../telemetry/payloads.js';

/** First 12 hex digits of the SHA-256 of the profile's settings: equal profiles have equal versions. */
export function profileVersion(profile: Profile): string {
  return createHash('sha256').update(JSON.stringify(profile)).digest('hex').slice(0, 12);
}

export interface DaemonCommandDependencies {
  profile: Profile;
  /** File the profile was loaded from; without it reload-profile answers COMMAND_UNAVAILABLE. */
  profileFile: string | undefined;
  boxId: string;
  softwareVersion: string;
  spool: Spool;
  /** Makes the senders look at the queue at once. */
  wakeSenders: () => void;
  currentStatus: () => StatusPayload | undefined;
  /** Called after the response to reload-profile, with the new, valid profile. */
  reload: (profile: Profile) => void;
  log: Logger;
}

const noArgs = z.strictObject({});

/** Registers the daemon's built-in commands (docs/mqtt.md lists them with their broker ACL role). */
export function registerDaemonCommands(registry: CommandRegistry, deps: DaemonCommandDependencies): void {
  registry.register('ping', {
    description: 'Answers at once; shows that the box and its command topic work.',
    access: 'monitor',
    args: noArgs,
    result: z.object({ pong: z.literal(true), boxId: z.string(), softwareVersion: z.string(), uptimeSeconds: z.number(), commands: z.array(z.string()) }),
    handler: () => ({
      pong: true as const,
      boxId: deps.boxId,
      softwareVersion: deps.softwareVersion,
      uptimeSeconds: Math.round(process.uptime()),
      commands: registry.list().map((command) => command.name),
    }),
  });

  registry.register('status', {
    description: 'Returns the status document now, with fresh counts.',
    access: 'monitor',
    args: noArgs,
    result: statusPayloadSchema,
    handler: () => {
      const status = deps.currentStatus();
      if (!status) throw new EndocapError(ErrorCodes.COMMAND_UNAVAILABLE, 'status is not available yet; try again in a few seconds');
      return status;
    },
  });

  registry.register('echo-destinations', {
    description: 'Sends a C-ECHO to every destination and reports each result.',
    access: 'monitor',
    args: noArgs,
    result: z.object({ destinations: z.array(z.object({ name: z.string(), ok: z.boolean(), ms: z.number(), reason: z.string().optional() })) }),
    // Each C-ECHO is bounded by the destination's connect, association and request timeouts.
    timeoutMs: 60_000,
    handler: async () => {
      const results = await Promise.all(
        dicomDestinations(deps.profile).map(async (destination) => {
          const result = await echo({ destination, callingAeTitle: destination.callingAeTitle ?? deps.profile.station.aeTitle, log: deps.log });
          return { name: destination.name, ...result };
        }),
      );
      return { destinations: results };
    },
  });

  registry.register('retry-set-aside', {
    description: 'Queues set-aside objects again: all, those of one destination, or the listed object ids.',
    access: 'operator',
    args: z.strictObject({ destination: z.string().optional(), ids: z.array(z.string().min(1)).min(1).max(1_000).optional() }),
    result: z.object({
      requeued: z.array(z.object({ id: z.string(), destination: z.string() })),
      problems: z.array(z.object({ id: z.string(), reason: z.string() })),
    }),
    handler: async (args) => {
      if (args.destination !== undefined && !deps.profile.destinations.some((destination) => destination.name === args.destination)) {
        throw new EndocapError(ErrorCodes.COMMAND_INVALID, `no destination named "${args.destination}"; see the profile's destinations`);
      }
      const request = args.ids ? { ids: args.ids, destination: args.destination } : { allSetAside: true, destination: args.destination };
      const result = await retryObjects(deps.spool, request);
      deps.log.info({ requeued: result.requeued.length, problems: result.problems.length }, 'set-aside objects queued again by a remote command');
      if (result.requeued.length > 0) deps.wakeSenders();
      return result;
    },
  });

  registry.register('reload-profile', {
    description: 'Validates the profile file again and, when it is valid and changed, restarts the daemon with it. An invalid file leaves the running profile in place.',
    access: 'admin',
    args: noArgs,
    result: z.object({ valid: z.literal(true), profileVersion: z.string(), previousProfileVersion: z.string(), restarting: z.boolean() }),
    handler: async (_args, context) => {
      if (!deps.profileFile) throw new EndocapError(ErrorCodes.COMMAND_UNAVAILABLE, 'the daemon was not started from a profile file');
      let profile: Profile;
      try {
        profile = await loadProfile(deps.profileFile);
      } catch (error) {
        if (error instanceof ProfileError) {
          deps.log.warn({ problems: error.problems.length }, 'reloaded profile is invalid, the running profile stays');
          throw new EndocapError(ErrorCodes.PROFILE_INVALID, `profile not reloaded, the running profile stays: ${error.message.replace(/\n/g, '; ')}`);
        }
        throw error;
      }
      const next = profileVersion(profile);
      const previous = profileVersion(deps.profile);
      const restarting = next !== previous;
      if (restarting) {
        deps.log.info({ profileVersion: next, previousProfileVersion: previous }, 'valid profile reloaded, restarting');
        context.afterResponse(() => deps.reload(profile));
      }
      return { valid: true as const, profileVersion: next, previousProfileVersion: previous, restarting };
    },
  });

  // The exam workflow registers the real commands over these stand-ins when a worklist is configured.
  for (const name of ['select-procedure', 'end-exam']) {
    registry.register(name, {
      description: `${name} of the exam workflow; unavailable until a worklist is configured.`,
      access: 'operator',
      args: z.unknown(),
      result: z.never(),
      placeholder: true,
      handler: () => {
        throw new EndocapError(ErrorCodes.COMMAND_UNAVAILABLE, `${name} is not available: this box has no worklist configured`);
      },
    });
  }
}
