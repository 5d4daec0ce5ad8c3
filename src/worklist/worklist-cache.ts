import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { DurableJsonFile } from '../state/durable-json-file.js';
import { worklistEntrySchema } from './worklist-entry.js';

const cacheSchema = z.strictObject({
  formatVersion: z.literal(1),
  /** ISO time the query that produced the entries finished. */
  fetchedAt: z.iso.datetime(),
  /** `host:port AE` of the server, so that a cache of another server is not used after a profile change. */
  server: z.string(),
  entries: z.array(worklistEntrySchema),
});

export type WorklistCacheData = z.infer<typeof cacheSchema>;

/** Names a worklist server in the cache, so that a cache of another server is not used. */
export function worklistServerKey(server: { host: string; port: number; calledAeTitle: string }): string {
  return `${server.host}:${server.port} ${server.calledAeTitle}`;
}

/**
 * The last good worklist, in `<stateDirectory>/worklist-cache.json`, so that
 * exams can be started while the server is down. The file contains patient data
 * and is written with mode 0640, like the rest of the state folder.
 */
export class WorklistCache {
  private readonly file: DurableJsonFile<unknown>;
  private readonly directory: string;
  private readonly log: Logger;

  constructor(options: { stateDirectory: string; log: Logger }) {
    this.directory = options.stateDirectory;
    this.file = new DurableJsonFile(path.join(options.stateDirectory, 'worklist-cache.json'));
    this.log = options.log;
  }

  /** Returns the cached worklist of `server`, or undefined when there is none or it cannot be used. */
  async load(server: string): Promise<WorklistCacheData | undefined> {
    let content: unknown;
    try {
      content = await this.file.read();
    } catch (error) {
      // A JSON.parse message quotes the text around the error, which is patient data here.
      const reason = error instanceof SyntaxError ? 'not valid JSON' : errorMessage(error);
      this.log.error({ err: { message: reason } }, 'worklist cache unreadable, ignored');
      return undefined;
    }
    if (content === null) return undefined;
    const parsed = cacheSchema.safeParse(content);
    if (!parsed.success) {
      this.log.error({ issues: parsed.error.issues.length }, 'worklist cache invalid, ignored');
      return undefined;
    }
    if (parsed.data.server !== server) {
      this.log.info({}, 'worklist cache is of another server, ignored');
      return undefined;
    }
    return parsed.data;
  }

  async save(data: WorklistCacheData): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      await this.file.write(data);
    } catch (error) {
      throw new EndocapError(ErrorCodes.WORKLIST_CACHE_FAILED, `worklist cache not written: ${errorMessage(error)}`, { cause: error, retryable: true });
    }
  }
}
