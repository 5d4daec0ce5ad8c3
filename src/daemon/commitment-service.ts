import { EventEmitter } from 'node:events';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { CommitmentListener } from '../pacs/commitment-listener.js';
import { CommitmentRequester, type CommitmentSupportChangedEvent } from '../pacs/commitment-requester.js';
import { CommitmentTracker, type CommitmentFailedEvent, type ObjectCommittedEvent } from '../pacs/commitment-tracker.js';
import { commitmentEnabled, dicomDestinations, type Profile } from '../profile/schema.js';
import type { CommitmentQueue } from '../spool/types.js';

export interface CommitmentServiceEvents {
  objectCommitted: [ObjectCommittedEvent];
  /** The object was queued again, to be sent to `destination` once more. */
  commitmentFailed: [CommitmentFailedEvent];
  commitmentSupportChanged: [CommitmentSupportChangedEvent];
}

export interface CommitmentServiceOptions {
  profile: Profile;
  queue: CommitmentQueue;
  /** Generator of Transaction UIDs under the station's UID root. */
  newUid: () => string;
  log: Logger;
}

/**
 * Storage Commitment for the whole box: one tracker of pending transactions
 * (in `<spool folder>/commitments`), one requester per destination that
 * enables commitment, and the listener for results when it is configured.
 */
export class CommitmentService extends EventEmitter<CommitmentServiceEvents> {
  private readonly log: Logger;
  private readonly tracker: CommitmentTracker;
  private readonly requesters = new Map<string, CommitmentRequester>();
  private readonly listener: CommitmentListener | undefined;
  private listening = false;

  constructor(options: CommitmentServiceOptions) {
    super();
    const { profile } = options;
    this.log = options.log;
    this.tracker = new CommitmentTracker({ directory: path.join(profile.spool.directory, 'commitments'), queue: options.queue, log: options.log });
    this.tracker.on('objectCommitted', (event) => this.emit('objectCommitted', event));
    this.tracker.on('commitmentFailed', (event) => this.emit('commitmentFailed', event));

    for (const destination of dicomDestinations(profile)) {
      if (destination.storageCommitment?.enabled !== true) continue;
      const requester = new CommitmentRequester({
        destination,
        callingAeTitle: destination.callingAeTitle ?? profile.station.aeTitle,
        queue: options.queue,
        tracker: this.tracker,
        newUid: options.newUid,
        log: options.log,
      });
      requester.on('commitmentSupportChanged', (event) => this.emit('commitmentSupportChanged', event));
      this.requesters.set(destination.name, requester);
    }

    const config = profile.commitmentListener;
    if (config) {
      this.listener = new CommitmentListener({ config, aeTitle: config.aeTitle ?? profile.station.aeTitle, sink: this.tracker, log: options.log });
    }
  }

  /** True when the profile enables commitment for a destination or configures the listener. */
  static isConfigured(profile: Profile): boolean {
    return profile.commitmentListener !== undefined || profile.destinations.some(commitmentEnabled);
  }

  /**
   * Loads pending transactions, starts the listener, then the requesters. A
   * listener that cannot bind is logged and left out: capture and sending go
   * on, and results sent on the request's own association still arrive.
   */
  async start(): Promise<void> {
    await this.tracker.open();
    if (this.listener) {
      try {
        await this.listener.start();
        this.listening = true;
      } catch (error) {
        // NOTE: the listener is not started again later. Results sent on new associations are lost until a restart,
        // and their objects are requested again after resultTimeoutMs.
        this.log.error({ err: { message: errorMessage(error) } }, 'commitment listener not started');
      }
    }
    for (const requester of this.requesters.values()) requester.start();
  }

  /** Stops the requesters, then the listener. */
  async stop(): Promise<void> {
    await Promise.all([...this.requesters.values()].map((requester) => requester.stop()));
    if (this.listening) await this.listener?.stop();
    this.listening = false;
  }

  /** Tells the requester of `destination` that an object was stored there. */
  objectStored(destination: string): void {
    this.requesters.get(destination)?.wake();
  }
}
