import { EventEmitter } from 'node:events';
import path from 'node:path';
import { createUidGenerator } from '../dicom/uid.js';
import { StowRsClient } from '../dicomweb/stow-rs.js';
import { errorMessage } from '../errors.js';
import { KeyboardPedal } from '../footswitch/keyboard-pedal.js';
import { SerialFootswitch } from '../footswitch/serial-footswitch.js';
import type { Logger } from '../log.js';
import { Sender } from '../pacs/sender.js';
import { commitmentEnabled, type AnyDestinationConfig, type Profile, type PedalAction } from '../profile/schema.js';
import { Spool } from '../spool/spool.js';
import { AppState } from '../state/app-state.js';
import { CommandRegistry } from '../telemetry/commands.js';
import type { StatusInput } from '../telemetry/status-document.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { VideoSource } from '../video/video-source.js';
import { resolveBoxId } from './box-identity.js';
import { CommitmentService } from './commitment-service.js';
import { ControlServer, type DaemonStatus } from './control-server.js';
import { ExamWorkflow, finishRecordingClip } from './exam-workflow.js';
import { ClipPipeline, profileRecordsClips } from './clip-pipeline.js';
import { profileVersion, registerDaemonCommands } from './remote-commands.js';
import { StillCapture } from './still-capture.js';
import { notifySystemd, startSystemdWatchdog } from './systemd.js';
import { SOFTWARE_VERSION } from '../version.js';

export interface DaemonOptions {
  profile: Profile;
  log: Logger;
  /** Overrides the keyboard pedal's stdin, for the demo. */
  interactive?: boolean;
  /**
   * Runs the clip pre-record even when no gesture maps to clip, for the demo.
   * Defaults to on when a gesture maps to clip or the keyboard pedal (c key) is interactive.
   */
  clips?: boolean;
  /** File the profile was loaded from, for the reload-profile command. */
  profileFile?: string;
}

interface DaemonEvents {
  stillCaptured: [{ objectId: string; latencyMs: number }];
  captureFailed: [{ reason: string }];
  objectStored: [{ objectId: string; destination: string }];
  objectSetAside: [{ objectId: string; destination: string; reason: string }];
  objectCommitted: [{ objectId: string; destination: string }];
  clipStarted: [{ clipId: string; part: number; preRecordMs: number }];
  clipCaptured: [{ clipId: string; part: number; objectId: string; bytes: number }];
  clipFailed: [{ clipId?: string; reason: string }];
  quitRequested: [];
  /** reload-profile found a valid, changed profile; the caller restarts the daemon with it. */
  reloadRequested: [{ profile: Profile }];
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
  private commitment: CommitmentService | undefined;
  private pedal: Pedal | undefined;
  private capture: StillCapture | undefined;
  private clips: ClipPipeline | undefined;
  private readonly clipsRequested: boolean | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private stopWatchdog: (() => void) | undefined;
  private lastError: string | undefined;
  private control: ControlServer | undefined;
  private exams: ExamWorkflow | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly profileFile: string | undefined;
  private readonly profileVersion: string;
  /** Whether the last association per destination succeeded, from the senders' linkChanged events. */
  private readonly links: Record<string, boolean> = {};
  /** Remote commands served over MQTT; components register theirs here. */
  readonly commands = new CommandRegistry();

  constructor(options: DaemonOptions) {
    super();
    this.profile = options.profile;
    this.log = options.log;
    this.interactive = options.interactive ?? true;
    this.clipsRequested = options.clips;
    this.profileFile = options.profileFile;
    this.profileVersion = profileVersion(options.profile);
  }

  async start(): Promise<void> {
    const profile = this.profile;
    this.boxId = await resolveBoxId(profile.station);
    this.log.info({ boxId: this.boxId, version: SOFTWARE_VERSION, destinations: profile.destinations.map((d) => d.name) }, 'daemon starting');

    this.state = await AppState.open(profile.stateDirectory);

    this.spool = new Spool({
      directory: profile.spool.directory,
      destinations: profile.destinations.map((d) => ({ name: d.name, commitment: commitmentEnabled(d) })),
      retentionHours: profile.spool.retentionHours,
      maxBytes: profile.spool.maxBytes,
      minFreeBytes: profile.spool.minFreeBytes,
      log: this.log,
    });
    this.spool.on('alarmRaised', ({ id, severity, reason }) => {
      this.lastError = `${id}: ${reason}`;
      this.telemetry?.alarms.raise(id, severity, reason);
      this.publishStatus();
    });
    this.spool.on('alarmCleared', ({ id }) => {
      this.telemetry?.alarms.clear(id);
      this.publishStatus();
    });
    await this.spool.open();

    await this.startTelemetry();

    this.video = new VideoSource({
      config: profile.video,
      log: this.log,
      image: profile.image,
      stillWindowMs: profile.still.selection === 'sharpest' ? profile.still.sharpestWindowMs : undefined,
    });
    this.video.on('signalAcquired', () => {
      this.telemetry?.publishEvent({ type: 'video-signal-acquired' });
      this.telemetry?.alarms.clear('video-signal-lost');
      this.publishStatus();
    });
    this.video.on('signalLost', ({ reason }) => {
      this.telemetry?.publishEvent({ type: 'video-signal-lost', reason });
      this.telemetry?.alarms.raise('video-signal-lost', 'critical', `no video signal: ${reason}`);
      this.publishStatus();
    });
    await this.video.start();

    // One generator for every UID this process makes, so that none repeats.
    const newUid = createUidGenerator(profile.station.uidRoot);
    this.startSenders();
    await this.startCommitment(newUid);
    await this.startExams(newUid);

    this.capture = new StillCapture({
      profile,
      boxId: this.boxId,
      softwareVersion: SOFTWARE_VERSION,
      video: this.video,
      spool: this.spool,
      state: this.state,
      newUid,
      ...(this.exams ? { context: this.exams.captureContext } : {}),
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

    await this.startClips(newUid);
    await this.startPedal();

    this.control = new ControlServer({
      socketPath: path.join(profile.stateDirectory, 'control.sock'),
      spool: this.spool,
      status: () => this.controlStatus(),
      objectsQueued: () => this.senders.forEach((sender) => sender.wake()),
      ...(this.exams ? { exams: this.exams } : {}),
      log: this.log,
    });
    await this.control.start();

    this.statusTimer = setInterval(() => this.publishStatus(), 5_000);
    this.statusTimer.unref();
    this.publishStatus();
    // READY=1 only now: the spool has recovered and every component started with a valid profile.
    notifySystemd('READY=1', this.log);
    this.stopWatchdog = startSystemdWatchdog(this.log);
    this.log.info({ boxId: this.boxId }, 'daemon started');
  }

  async stop(): Promise<void> {
    this.log.info('daemon stopping');
    notifySystemd('STOPPING=1', this.log);
    // Keep-alives go on until the spool is closed, because a stop can outlast WatchdogSec= (TimeoutStopSec= bounds it).
    if (this.statusTimer) clearInterval(this.statusTimer);
    await this.stopStep('control socket', () => this.control?.stop());
    await this.stopStep('footswitch', () => this.pedal?.stop());
    await this.stopStep('still capture', () => this.capture?.drain());
    // A clip still recording is closed and stored; a long one takes seconds to write.
    await this.stopStep('clips', () => this.clips?.stop(), 30_000);
    await this.stopStep('exams', () => this.exams?.stop());
    await this.stopStep('storage commitment', () => this.commitment?.stop());
    await this.stopStep('senders', () => Promise.all(this.senders.map((sender) => sender.stop())));
    await this.stopStep('video', () => this.video?.stop());
    await this.stopStep('telemetry', () => this.telemetry?.stop());
    await this.stopStep('spool', () => this.spool?.close());
    this.stopWatchdog?.();
    this.stopWatchdog = undefined;
    this.log.info('daemon stopped');
  }

  /** Runs the action of a pedal gesture; the demo calls it for simulated presses. */
  press(action: PedalAction, pressedAt: number = Date.now()): Promise<void> {
    if (action === 'still' && this.capture) return this.capture.capture(pressedAt);
    if (action === 'end-exam') {
      const exams = this.exams?.exams;
      if (!exams) this.log.warn('end-exam requested but no worklist is configured');
      else if (!exams.status().active) this.log.info('end-exam pressed with no exam open');
      else return exams.end({ source: 'pedal' }).then(() => undefined, (error: unknown) => this.log.error({ err: { message: errorMessage(error) } }, 'exam not ended'));
    }
    if (action === 'clip') {
      if (this.clips) this.clips.toggle(pressedAt);
      else this.log.warn('clip requested but clips are not enabled by the profile');
    }
    return Promise.resolve();
  }

  /** Returns a summary for the demo and tests: video signal, and objects still waiting for a destination. */
  status(): { videoSignal: boolean; queueDepth: number } {
    const queueDepth = this.spool ? this.spool.list().filter((entry) => Object.values(entry.deliveries).some((delivery) => delivery.state === 'queued' || delivery.state === 'sending')).length : 0;
    return { videoSignal: this.video?.status().signal ?? false, queueDepth };
  }

  /** Builds the summary that the control socket's `status` command returns. */
  controlStatus(): DaemonStatus {
    const video = this.video?.status();
    const pedal = this.pedal?.status();
    const status: DaemonStatus = {
      version: SOFTWARE_VERSION,
      boxId: this.boxId,
      pid: process.pid,
      startedAt: this.startedAt,
      video: { signal: video?.signal ?? false, fps: video?.fps ?? 0 },
      footswitch: { kind: this.profile.footswitch.kind, connected: pedal?.connected ?? false },
      spool: this.spool?.stats() ?? { objects: 0, bytes: 0, retained: 0, retainedBytes: 0, alarms: [], destinations: {} },
      senders: this.senders.map((sender) => sender.status()),
    };
    if (video?.width !== undefined) status.video.width = video.width;
    if (video?.height !== undefined) status.video.height = video.height;
    if (pedal?.lastError !== undefined) status.footswitch.lastError = pedal.lastError;
    if (this.lastError !== undefined) status.lastError = this.lastError;
    return status;
  }

  get spoolDirectory(): string {
    return this.profile.spool.directory;
  }

  /** Starts MQTT telemetry when the profile has an mqtt section. A failure is logged: capture runs without it. */
  private async startTelemetry(): Promise<void> {
    const config = this.profile.mqtt;
    const spool = this.spool;
    if (!config || !spool) return;
    const telemetry = new Telemetry({
      config,
      boxId: this.boxId,
      clientId: config.clientId ?? `endocap-${this.boxId}`,
      softwareVersion: SOFTWARE_VERSION,
      log: this.log,
      readStatus: () => this.telemetryStatus(),
      commands: this.commands,
      diskPath: this.profile.spool.directory,
      destinations: this.profile.destinations.map((destination) => destination.name),
    });
    registerDaemonCommands(this.commands, {
      profile: this.profile,
      profileFile: this.profileFile,
      boxId: this.boxId,
      softwareVersion: SOFTWARE_VERSION,
      spool,
      wakeSenders: () => this.senders.forEach((sender) => sender.wake()),
      currentStatus: () => telemetry.currentStatus(),
      reload: (profile) => this.emit('reloadRequested', { profile }),
      log: this.log,
    });
    try {
      await telemetry.start();
    } catch (error) {
      this.log.error({ err: { message: errorMessage(error) } }, 'telemetry not started, capture goes on without it');
      await telemetry.stop();
      return;
    }
    this.telemetry = telemetry;
    for (const alarm of spool.stats().alarms) telemetry.alarms.raise(alarm.id, alarm.severity, alarm.reason);
  }

  /** Starts the worklist, exam and MPPS parts the profile configures; captures then go into the selected exam. */
  private async startExams(newUid: () => string): Promise<void> {
    const { spool, state } = this;
    if (!spool || !state) return;
    const exams = new ExamWorkflow({
      profile: this.profile,
      state,
      boxId: this.boxId,
      newUid,
      inSpool: (sopInstanceUid) => spool.findBySopInstanceUid(sopInstanceUid) !== undefined,
      beforeEnd: () => finishRecordingClip(this.clips),
      telemetry: () => this.telemetry,
      log: this.log,
    });
    await exams.start();
    exams.registerCommands(this.commands);
    this.exams = exams;
  }

  private async startClips(newUid: () => string): Promise<void> {
    const { profile } = this;
    const wanted = this.clipsRequested ?? (profileRecordsClips(profile) || (profile.footswitch.kind === 'keyboard' && this.interactive));
    if (!wanted || !this.video || !this.spool || !this.state) return;
    const clips = new ClipPipeline({
      profile,
      boxId: this.boxId,
      softwareVersion: SOFTWARE_VERSION,
      video: this.video,
      spool: this.spool,
      state: this.state,
      newUid,
      ...(this.exams ? { context: this.exams.captureContext } : {}),
      log: this.log,
    });
    clips.on('clipStarted', ({ clipId, part, preRecordMs }) => {
      this.telemetry?.publishEvent({ type: 'clip-started', clipId, part });
      this.emit('clipStarted', { clipId, part, preRecordMs });
    });
    clips.on('clipCaptured', ({ clipId, part, objectId, bytes }) => {
      this.telemetry?.publishEvent({ type: 'clip-captured', clipId, part, objectId, bytes });
      for (const sender of this.senders) sender.wake();
      this.emit('clipCaptured', { clipId, part, objectId, bytes });
      this.publishStatus();
    });
    clips.on('clipFailed', ({ clipId, part, code, reason }) => {
      this.lastError = code;
      this.telemetry?.publishEvent({ type: 'clip-failed', clipId, part, reason });
      this.emit('clipFailed', { clipId, reason });
      this.publishStatus();
    });
    await clips.start();
    this.clips = clips;
  }

  private startSenders(): void {
    const spool = this.spool;
    if (!spool) return;
    for (const destination of this.profile.destinations) {
      const sender = this.createSender(destination, spool);
      sender.on('objectStored', ({ id, destination: name }) => {
        this.commitment?.objectStored(name);
        this.telemetry?.publishEvent({ type: 'object-stored', objectId: id, destination: name });
        this.emit('objectStored', { objectId: id, destination: name });
        this.publishStatus();
      });
      sender.on('storeFailed', ({ id, destination: name, reason, status }) => {
        this.lastError = `${name}: ${reason}`;
        this.telemetry?.publishEvent({ type: 'store-failed', objectId: id, destination: name, reason, status });
        this.publishStatus();
      });
      sender.on('linkChanged', ({ destination: name, up, reason }) => {
        this.links[name] = up;
        this.telemetry?.alarms.set(`destination-unreachable.${name}`, !up, 'critical', `${name}: ${reason ?? 'association failed'}`);
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

  private createSender(destination: AnyDestinationConfig, spool: Spool): Sender {
    if (destination.kind === 'dicom') {
      return new Sender({ destination, callingAeTitle: destination.callingAeTitle ?? this.profile.station.aeTitle, queue: spool, log: this.log });
    }
    const client = new StowRsClient({ destination, log: this.log });
    client.on('faultChanged', ({ destination: name, kind, active, reason }) => {
      const alarm = kind === 'credentials' ? `destination-credentials.${name}` : `destination-config.${name}`;
      this.telemetry?.alarms.set(alarm, active, 'critical', `${name}: ${reason ?? kind}`);
      this.publishStatus();
    });
    return new Sender({ destination, transfer: client.transfer, endpoint: client.endpoint, queue: spool, log: this.log });
  }

  /** Starts Storage Commitment after the senders, because it requests commitment for the objects they store. */
  private async startCommitment(newUid: () => string): Promise<void> {
    const spool = this.spool;
    if (!spool || !CommitmentService.isConfigured(this.profile)) return;
    const commitment = new CommitmentService({ profile: this.profile, queue: spool, newUid, log: this.log });
    commitment.on('objectCommitted', ({ id, destination }) => {
      this.telemetry?.publishEvent({ type: 'object-committed', objectId: id, destination });
      this.emit('objectCommitted', { objectId: id, destination });
      this.publishStatus();
    });
    commitment.on('commitmentFailed', ({ id, destination, reason }) => {
      this.lastError = `${destination}: ${reason}`;
      this.telemetry?.publishEvent({ type: 'commitment-failed', objectId: id, destination, reason });
      // The object is queued again, so its sender has work.
      this.senders.find((sender) => sender.status().destination === destination)?.wake();
      this.publishStatus();
    });
    commitment.on('commitmentSupportChanged', ({ destination, supported, reason }) => {
      if (!supported) this.lastError = `${destination}: ${reason ?? 'storage commitment rejected'}`;
      this.telemetry?.alarms.set(`commitment-unsupported.${destination}`, !supported, 'warning', `${destination}: ${reason ?? 'storage commitment rejected'}`);
      this.telemetry?.publishEvent({ type: supported ? 'commitment-supported' : 'commitment-unsupported', destination, reason });
      this.publishStatus();
    });
    await commitment.start();
    this.commitment = commitment;
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
      this.telemetry?.alarms.clear('footswitch-disconnected');
      this.publishStatus();
    });
    pedal.on('disconnected', ({ reason }) => {
      this.telemetry?.publishEvent({ type: 'footswitch-disconnected', reason });
      this.telemetry?.alarms.raise('footswitch-disconnected', 'warning', `footswitch disconnected: ${reason}`);
      this.publishStatus();
    });
    if (pedal instanceof KeyboardPedal) pedal.on('quitRequested', () => this.emit('quitRequested'));
    this.pedal = pedal;
    await pedal.start();
  }

  /** Tells telemetry that the state changed, and raises or clears the set-aside alarms. */
  private publishStatus(): void {
    const telemetry = this.telemetry;
    if (!telemetry || !this.spool) return;
    for (const [name, stats] of Object.entries(this.spool.stats().destinations)) {
      telemetry.alarms.set(`objects-set-aside.${name}`, stats.setAside > 0, 'warning', `${stats.setAside} object(s) set aside for ${name}; see retry-set-aside`);
    }
    telemetry.statusChanged();
  }

  /** Collects the state that telemetry publishes; returns undefined before the spool is open. */
  private telemetryStatus(): StatusInput | undefined {
    if (!this.spool) return undefined;
    const video = this.video?.status();
    const pedal = this.pedal?.status();
    const input: StatusInput = {
      startedAt: this.startedAt,
      profileVersion: this.profileVersion,
      video: { signal: video?.signal ?? false, fps: video?.fps ?? 0, framesDropped: video?.framesDropped ?? 0 },
      footswitch: { kind: this.profile.footswitch.kind, connected: pedal?.connected ?? false },
      spool: this.spool.stats(),
      senders: this.senders.map((sender) => sender.status()),
      links: { ...this.links },
      ...this.exams?.statusInput(),
    };
    if (video?.width !== undefined) input.video.width = video.width;
    if (video?.height !== undefined) input.video.height = video.height;
    if (video?.pixelFormat !== undefined) input.video.pixelFormat = video.pixelFormat;
    return input;
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
