import { EventEmitter } from 'node:events';
import { Backoff } from '../backoff.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { WorklistConfig } from '../profile/schema.js';
import { WorklistCache, worklistServerKey } from './worklist-cache.js';
import { queryWorklist, type WorklistQueryResult } from './worklist-client.js';
import type { EntryWarning, WorklistEntry } from './worklist-entry.js';
import { buildWorklistQuery, dateRange } from './worklist-query.js';

export interface WorklistServiceOptions {
  config: WorklistConfig;
  /** This box's AE title: the calling AE title, and the station matched unless the config names another. */
  stationAeTitle: string;
  stateDirectory: string;
  log: Logger;
  /** Clock in ms since the epoch; tests pass a fake one. */
  clock?: () => number;
}

export interface WorklistUpdated {
  entries: number;
  matches: number;
  malformed: number;
  truncated: boolean;
  warnings: EntryWarning[];
  durationMs: number;
}

interface WorklistServiceEvents {
  worklistUpdated: [WorklistUpdated];
  worklistFailed: [{ code: string; reason: string; cacheAgeMs: number | undefined }];
}

export interface WorklistStatus {
  entries: number;
  /** ISO time of the last successful query, from this run or the cache. */
  fetchedAt?: string;
  /** Age of the entries in ms; undefined before the first successful query. */
  cacheAgeMs?: number;
  lastError?: string;
  lastErrorCode?: string;
  consecutiveFailures: number;
  refreshing: boolean;
}

/**
 * Keeps the procedures scheduled for this station: queries the worklist
 * server on a schedule and on demand, and keeps the last good result on disk
 * so that exams can start while the server is down. A failed query keeps the
 * previous entries and is retried with backoff.
 */
export class WorklistService extends EventEmitter<WorklistServiceEvents> {
  private readonly options: WorklistServiceOptions;
  private readonly log: Logger;
  private readonly cache: WorklistCache;
  private readonly backoff: Backoff;
  private readonly clock: () => number;
  private readonly serverKey: string;
  private current: WorklistEntry[] = [];
  private fetchedAt: number | undefined;
  private lastError: EndocapError | undefined;
  private refreshing: Promise<WorklistQueryResult> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly stopping = new AbortController();

  constructor(options: WorklistServiceOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'worklist' });
    this.cache = new WorklistCache({ stateDirectory: options.stateDirectory, log: this.log });
    this.backoff = new Backoff(options.config.retry);
    this.clock = options.clock ?? Date.now;
    this.serverKey = worklistServerKey(options.config);
  }

  /** Loads the cache and starts querying in the background; never waits for the server. */
  async start(): Promise<void> {
    this.running = true;
    const cached = await this.cache.load(this.serverKey);
    if (cached) {
      this.current = cached.entries;
      this.fetchedAt = Date.parse(cached.fetchedAt);
      this.log.info({ entries: cached.entries.length, cacheAgeMs: this.cacheAgeMs() }, 'worklist cache loaded');
    }
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.stopping.abort();
    await this.refreshing?.catch(() => undefined);
  }

  /** The entries of the last successful query. */
  get entries(): readonly WorklistEntry[] {
    return this.current;
  }

  cacheAgeMs(): number | undefined {
    return this.fetchedAt === undefined ? undefined : Math.max(0, this.clock() - this.fetchedAt);
  }

  status(): WorklistStatus {
    const status: WorklistStatus = { entries: this.current.length, consecutiveFailures: this.backoff.failures, refreshing: this.refreshing !== undefined };
    if (this.fetchedAt !== undefined) status.fetchedAt = new Date(this.fetchedAt).toISOString();
    const age = this.cacheAgeMs();
    if (age !== undefined) status.cacheAgeMs = age;
    if (this.lastError) {
      status.lastError = this.lastError.message;
      status.lastErrorCode = this.lastError.code;
    }
    return status;
  }

  /**
   * Queries now, or joins the query already running. Resolves with its result;
   * rejects with WORKLIST_QUERY_FAILED while the previous entries stay in use.
   */
  refresh(): Promise<WorklistQueryResult> {
    this.refreshing ??= this.query().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.refresh().then(
        () => this.schedule(this.options.config.refreshIntervalMs),
        () => this.schedule(this.backoff.next()),
      );
    }, delayMs);
    this.timer.unref();
  }

  private async query(): Promise<WorklistQueryResult> {
    const { config, stationAeTitle } = this.options;
    const range = dateRange(new Date(this.clock()), config.daysBefore, config.daysAfter);
    const identifier = buildWorklistQuery({
      ...range,
      ...(config.matchStationAeTitle ? { stationAeTitle: config.stationAeTitle ?? stationAeTitle } : {}),
      ...(config.modality === null ? {} : { modality: config.modality }),
    });
    let result: WorklistQueryResult;
    try {
      result = await queryWorklist({ server: config, callingAeTitle: config.callingAeTitle ?? stationAeTitle, identifier, log: this.log, signal: this.stopping.signal });
    } catch (error) {
      this.lastError = error instanceof EndocapError ? error : new EndocapError(ErrorCodes.WORKLIST_QUERY_FAILED, errorMessage(error), { cause: error });
      const cacheAgeMs = this.cacheAgeMs();
      this.log.warn({ code: this.lastError.code, err: { message: this.lastError.message }, cacheAgeMs, cachedEntries: this.current.length }, 'worklist query failed, cached entries kept');
      this.emit('worklistFailed', { code: this.lastError.code, reason: this.lastError.message, cacheAgeMs });
      throw this.lastError;
    }

    this.backoff.reset();
    this.lastError = undefined;
    this.current = result.entries;
    this.fetchedAt = this.clock();
    const update: WorklistUpdated = {
      entries: result.entries.length,
      matches: result.matches,
      malformed: result.malformed,
      truncated: result.truncated,
      warnings: result.warnings,
      durationMs: result.durationMs,
    };
    this.log.info(update, 'worklist updated');
    if (result.warnings.length > 0 || result.malformed > 0) this.log.warn({ warnings: result.warnings, malformed: result.malformed }, 'worklist response had problems; entries were read as well as possible');
    try {
      await this.cache.save({ formatVersion: 1, fetchedAt: new Date(this.fetchedAt).toISOString(), server: this.serverKey, entries: result.entries });
    } catch (error) {
      this.log.error({ err: { message: errorMessage(error) } }, 'worklist cache not saved; the entries stay in memory');
    }
    this.emit('worklistUpdated', update);
    return result;
  }
}
