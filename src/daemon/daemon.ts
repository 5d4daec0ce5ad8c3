import { EventEmitter } from 'node:events';
import { createUidGenerator } from '../dicom/uid.js';
import { errorMessage } from '../errors.js';
import { KeyboardPedal } from '../footswitch/keyboard-pedal.js';
import { SerialFootswitch } from '../footswitch/serial-footswitch.js';
import type { Logger } from '../log.js';
import { Sender } from '../pacs/sender.js';
import type { Profile, PedalAction } from '../profile/schema.js';
import { Spool } from '../spool/spool.js';
import { AppState } from '../state/app-state.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { VideoSource } from '../video/video-source.js';
import { resolveBoxId } from './box-identity.js';
import { StillCapture } from './still-capture.js';
import { notifySystemd } from './systemd.js';
import { SOFTWARE_VERSION } from '../version.js';

export interface DaemonOptions {
  profile: Profile;
  log: Logger;
  /** Overrides the keyboard pedal's stdin, for the demo. */
  interactive?: boolean;
}

interface DaemonEvents {
  stillCaptured: [{ objectId: string; latencyMs: number }];
  captureFailed: [{ reason: string }];
  objectStored: [{ objectId: string; destination: string }];
  objectSetAside: [{ objectId: string; destination: string; reason: string }];
  quitRequested: [];
}

type Pedal = SerialFootswitch | KeyboardPedal;

/**
 * Wires the components together. `start()` is a straight list of steps and
 * `stop()` undoes them in reverse order, each bounded in time.
 */
export class Daemon extends EventEmitter<DaemonEvents> {
  private readonly profile: Profile;
  private readonly log: Logger;
  private readonly interactive: boolean;
  private boxId = '';
  private state: AppState | undefined;
  private spool: Spool | undefined;
  private telemetry: Telemetry | undefined;
  private video: VideoSource | undefined;
  private senders: Sender[] = [];
  private pedal: Pedal | undefined;
  private capture: StillCapture | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private lastError: string | undefined;

  constructor(options: DaemonOptions) {
    super();
    this.profile = options.profile;
    this.log = options.log;
    this.interactive = options.interactive ?? true;
  }

  async start(): Promise<void> {
    const profile = this.profile;
    this.boxId = await resolveBoxId(profile.station);
    this.log.info({ boxId: this.boxId, version: SOFTWARE_VERSION, destinations: profile.destinations.map((d) => d.name) }, 'daemon starting');

    this.state = await AppState.open(profile.stateDirectory);

    this.spool = new Spool({ directory: profile.spool.directory, destinations: profile.destinations.map((d) => d.name), log: this.log });
    await this.spool.open();

    this.startTelemetry();

    this.video = new VideoSource({ config: profile.video, log: this.log });
    this.video.on('signalAcquired', () => {
      this.telemetry?.publishEvent({ type: 'video-signal-acquired' });
      this.publishStatus();
    });
    this.video.on('signalLost', ({ reason }) => {
      this.telemetry?.publishEvent({ type: 'video-signal-lost', reason });
      this.publishStatus();
    });
    await this.video.start();

    this.startSenders();

    this.capture = new StillCapture({
      profile,
      boxId: this.boxId,
      softwareVersion: SOFTWARE_VERSION,
      video: this.video,
      spool: this.spool,
      state: this.state,
      newUid: createUidGenerator(profile.station.uidRoot),
      log: this.log,
    });
    this.capture.on('stillCaptured', ({ objectId, bytes, latencyMs }) => {
      this.telemetry?.publishEvent({ type: 'still-captured', objectId, bytes });
      for (const sender of this.senders) sender.wake();
      this.emit('stillCaptured', { objectId, latencyMs });
      this.publishStatus();
    });
    this.capture.on('captureFailed', ({ reason, code }) => {
      this.lastError = code;
      this.telemetry?.publishEvent({ type: 'capture-failed', reason: code });
      this.emit('captureFailed', { reason });
      this.publishStatus();
    });

    await this.startPedal();

    this.statusTimer = setInterval(() => this.publishStatus(), 5_000);
    this.statusTimer.unref();
    this.publishStatus();
    notifySystemd('READY=1', this.log);
    this.log.info({ boxId: this.boxId }, 'daemon started');
  }

  async stop(): Promise<void> {
    this.log.info('daemon stopping');
    notifySystemd('STOPPING=1', this.log);
    if (this.statusTimer) clearInterval(this.statusTimer);
    await this.stopStep('footswitch', () => this.pedal?.stop());
    await this.stopStep('still capture', () => this.capture?.drain());
    await this.stopStep('senders', () => Promise.all(this.senders.map((sender) => sender.stop())));
    await this.stopStep('video', () => this.video?.stop());
    await this.stopStep('telemetry', () => this.telemetry?.stop());
    this.log.info('daemon stopped');
  }

  /** Runs the action of a pedal gesture; the demo calls it for simulated presses. */
  press(action: PedalAction, pressedAt: number = Date.now()): Promise<void> {
    if (action === 'still' && this.capture) return this.capture.capture(pressedAt);
    return Promise.resolve();
  }

  /** A summary for the demo and tests: video signal and objects still waiting for a destination. */
  status(): { videoSignal: boolean; queueDepth: number } {
    const queueDepth = this.spool ? this.spool.list().filter((entry) => Object.values(entry.deliveries).some((delivery) => delivery.state === 'queued')).length : 0;
    return { videoSignal: this.video?.status().signal ?? false, queueDepth };
  }

  get spoolDirectory(): string {
    return this.profile.spool.directory;
  }

  private startTelemetry(): void {
    const config = this.profile.mqtt;
    if (!config) return;
    this.telemetry = new Telemetry({
      config,
      boxId: this.boxId,
      clientId: config.clientId ?? `endocap-${this.boxId}`,
      softwareVersion: SOFTWARE_VERSION,
      log: this.log,
    });
    this.telemetry.start();
  }

  private startSenders(): void {
    const spool = this.spool;
    if (!spool) return;
    for (const destination of this.profile.destinations) {
      const sender = new Sender({
        destination,
        callingAeTitle: destination.callingAeTitle ?? this.profile.station.aeTitle,
        queue: spool,
        log: this.log,
      });
      sender.on('objectStored', ({ id, destination: name }) => {
        this.telemetry?.publishEvent({ type: 'object-stored', objectId: id, destination: name });
        this.emit('objectStored', { objectId: id, destination: name });
        this.publishStatus();
      });
      sender.on('storeFailed', ({ id, destination: name, reason, status }) => {
        this.lastError = `${name}: ${reason}`;
        this.telemetry?.publishEvent({ type: 'store-failed', objectId: id, destination: name, reason, status });
        this.publishStatus();
      });
      sender.on('objectSetAside', ({ id, destination: name, reason, status }) => {
        this.lastError = `${name}: ${reason}`;
        this.telemetry?.publishEvent({ type: 'object-set-aside', objectId: id, destination: name, reason, status });
        this.emit('objectSetAside', { objectId: id, destination: name, reason });
        this.publishStatus();
      });
      sender.start();
      this.senders.push(sender);
    }
  }

  private async startPedal(): Promise<void> {
    const config = this.profile.footswitch;
    if (config.kind === 'none') return;
    const pedal: Pedal =
      config.kind === 'serial'
        ? new SerialFootswitch({ config, log: this.log })
        : new KeyboardPedal({ config, log: this.log, enabled: this.interactive });
    pedal.on('gesture', ({ action, pressedAt }) => {
      void this.press(action, pressedAt);
    });
    pedal.on('connected', () => {
      this.telemetry?.publishEvent({ type: 'footswitch-connected' });
      this.publishStatus();
    });
    pedal.on('disconnected', ({ reason }) => {
      this.telemetry?.publishEvent({ type: 'footswitch-disconnected', reason });
      this.publishStatus();
    });
    if (pedal instanceof KeyboardPedal) pedal.on('quitRequested', () => this.emit('quitRequested'));
    this.pedal = pedal;
    await pedal.start();
  }

  private publishStatus(): void {
    if (!this.telemetry || !this.spool) return;
    const video = this.video?.status();
    const stats = this.spool.list();
    this.telemetry.updateStatus({
      videoSignal: video?.signal ?? false,
      videoWidth: video?.width,
      videoHeight: video?.height,
      videoFps: video?.fps,
      footswitchConnected: this.pedal?.status().connected ?? false,
      queueDepth: stats.filter((entry) => Object.values(entry.deliveries).some((delivery) => delivery.state === 'queued')).length,
      setAside: stats.filter((entry) => Object.values(entry.deliveries).some((delivery) => delivery.state === 'set-aside')).length,
      lastError: this.lastError,
    });
  }

  private async stopStep(name: string, step: () => Promise<unknown> | undefined, timeoutMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        step(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`did not stop within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (error) {
      this.log.warn({ step: name, err: { message: errorMessage(error) } }, 'stop step failed');
    } finally {
      clearTimeout(timer);
    }
  }
}
