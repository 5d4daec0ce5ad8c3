import type { PedalAction } from '../profile/schema.js';
import type { GestureKind, GestureRecognized, PedalChange } from './events.js';

/** Cancels a scheduled callback; calling it after the callback ran does nothing. */
export type CancelTimer = () => void;

/** Runs `callback` after `delayMs`; tests pass a fake one driven by a fake clock. */
export type Scheduler = (callback: () => void, delayMs: number) => CancelTimer;

export const systemScheduler: Scheduler = (callback, delayMs) => {
  const timer = setTimeout(callback, delayMs);
  return () => clearTimeout(timer);
};

/**
 * Shortest time between two gestures. A foot cannot press a pedal 20 times a
 * second, so anything faster is a fault (a flooding device, a shorted line)
 * and is dropped rather than turned into actions.
 */
export const MIN_GESTURE_INTERVAL_MS = 50;

export interface GestureRecognizerOptions {
  /** A raw level must stay unchanged this long to count; 0 turns debouncing off. */
  debounceMs: number;
  /** Held at least this long, from the first raw down edge, is a long press. */
  longPressMs: number;
  /** A second press starting within this time of the first release is a double press. */
  doublePressMs: number;
  /** Action per gesture. A `long` or `double` mapped to 'none' is not recognised at all (see the class comment). */
  gestures: Record<GestureKind, PedalAction>;
  clock: () => number;
  schedule?: Scheduler;
  /** Gestures closer together than this are dropped and counted; defaults to MIN_GESTURE_INTERVAL_MS. */
  minGestureIntervalMs?: number;
  /**
   * Emits a short press at the first raw down edge instead of after the
   * debounce, when neither long nor double presses are recognised. Meant for
   * byte and line protocols, where each edge is a message the pedal sent on
   * purpose, so it cannot be electrical noise. The debounce still merges the
   * bounce that follows into this one press.
   */
  leadingEdge?: boolean;
  onPedalChanged?: (change: PedalChange) => void;
  onGesture: (gesture: GestureRecognized) => void;
}

export interface GestureCounters {
  /** Raw level changes received. */
  rawEdges: number;
  /** Raw changes that reverted within the debounce time (contact bounce, glitches). */
  bouncesRejected: number;
  gesturesEmitted: number;
  /** Gestures dropped because they came sooner than the minimum gesture interval. */
  gesturesSuppressed: number;
}

type Phase =
  | 'idle'
  /** First press is down and may still become long. */
  | 'pressed'
  /** First press released; a second press within the window makes a double. */
  | 'awaitingSecond'
  /** Window ended while a second press was still being debounced. */
  | 'windowClosing'
  /** A gesture was already emitted for this press; waiting for the release. */
  | 'consumed';

/**
 * Pedal state machine: debounces raw levels and recognises short, long and
 * double presses. It does no I/O; clock and timers are injected.
 *
 * Rules:
 * - Debounce: a level counts once it has been stable for `debounceMs`. Every
 *   reported time is the first raw edge of the change, so `pressedAt` does not
 *   include the debounce delay.
 * - Long press fires as soon as the threshold is reached, while the pedal is
 *   still down, so the operator gets feedback without having to release.
 * - The double-press window runs from the first raw edge of the release. A
 *   second press whose first raw edge falls inside it is a double press, even
 *   if its debounce confirmation ends after the window.
 * - Latency: with `double` mapped to 'none', a short press is emitted at
 *   release without waiting for a window. With `long` also 'none', it is
 *   emitted at the debounced down edge, or at the first raw down edge when
 *   `leadingEdge` is set. A hold then counts as a short press.
 * - A `short` mapped to 'none' is still emitted, with action 'none'.
 * - `reset()` (used on disconnect) treats a held pedal as released and drops
 *   any gesture in progress without emitting it, because edges around an
 *   unplug are not reliable.
 */
export class GestureRecognizer {
  readonly counters: GestureCounters = { rawEdges: 0, bouncesRejected: 0, gesturesEmitted: 0, gesturesSuppressed: 0 };

  private readonly options: GestureRecognizerOptions;
  private readonly schedule: Scheduler;
  private readonly minGestureIntervalMs: number;
  private readonly recognisesLong: boolean;
  private readonly recognisesDouble: boolean;

  private rawDown = false;
  private stableDown = false;
  private lastRawEdgeAt = 0;
  /** First raw edge away from the stable level, while that change is being debounced. */
  private pendingEdgeAt: number | undefined;
  private cancelDebounce: CancelTimer | undefined;
  private cancelLongPress: CancelTimer | undefined;
  private cancelWindow: CancelTimer | undefined;
  private phase: Phase = 'idle';
  private gestureStartAt = 0;
  private releasedAt = 0;
  private lastGestureAt: number | undefined;
  /** A short press was emitted at the leading edge of the change being debounced. */
  private emittedAtLeadingEdge = false;

  constructor(options: GestureRecognizerOptions) {
    this.options = options;
    this.schedule = options.schedule ?? systemScheduler;
    this.minGestureIntervalMs = options.minGestureIntervalMs ?? MIN_GESTURE_INTERVAL_MS;
    this.recognisesLong = options.gestures.long !== 'none';
    this.recognisesDouble = options.gestures.double !== 'none';
  }

  /** Current debounced level. */
  get down(): boolean {
    return this.stableDown;
  }

  /** Feeds one raw level sample; repeated samples of the same level are ignored. */
  input(down: boolean, at: number = this.options.clock()): void {
    if (down === this.rawDown) return;
    this.rawDown = down;
    this.counters.rawEdges += 1;
    this.lastRawEdgeAt = at;
    const startsChange = this.pendingEdgeAt === undefined;
    this.pendingEdgeAt ??= at;

    if (this.options.leadingEdge && startsChange && down && !this.stableDown && this.phase === 'idle' && !this.recognisesLong && !this.recognisesDouble) {
      this.emittedAtLeadingEdge = true;
      this.emit('short', at);
    }

    if (this.options.debounceMs === 0) {
      this.settle();
      return;
    }
    this.cancelDebounce ??= this.schedule(() => this.onDebounceElapsed(), this.options.debounceMs);
  }

  /** Forgets the pedal state: a held pedal becomes released, and no pending gesture is emitted. */
  reset(): void {
    this.cancelDebounce?.();
    this.cancelLongPress?.();
    this.cancelWindow?.();
    this.cancelDebounce = undefined;
    this.cancelLongPress = undefined;
    this.cancelWindow = undefined;
    this.pendingEdgeAt = undefined;
    this.emittedAtLeadingEdge = false;
    this.rawDown = false;
    this.phase = 'idle';
    if (this.stableDown) {
      this.stableDown = false;
      this.options.onPedalChanged?.({ down: false, at: this.options.clock() });
    }
  }

  private onDebounceElapsed(): void {
    this.cancelDebounce = undefined;
    // One timer serves a whole burst of edges: re-arm it for the rest of the
    // quiet time instead of re-creating it on every edge of a flood.
    const quietMs = this.options.clock() - this.lastRawEdgeAt;
    if (quietMs < this.options.debounceMs) {
      this.cancelDebounce = this.schedule(() => this.onDebounceElapsed(), this.options.debounceMs - quietMs);
      return;
    }
    this.settle();
  }

  private settle(): void {
    const edgeAt = this.pendingEdgeAt ?? this.lastRawEdgeAt;
    this.pendingEdgeAt = undefined;
    const emittedAtLeadingEdge = this.emittedAtLeadingEdge;
    this.emittedAtLeadingEdge = false;
    if (this.rawDown === this.stableDown) {
      // Bounce or a glitch. With leading-edge emission, a tap shorter than the debounce was already reported as a press.
      this.counters.bouncesRejected += 1;
      if (this.phase === 'windowClosing') this.finishShortAfterWindow();
      return;
    }

    this.stableDown = this.rawDown;
    this.options.onPedalChanged?.({ down: this.stableDown, at: edgeAt });
    if (this.stableDown) this.onPressed(edgeAt, emittedAtLeadingEdge);
    else this.onReleased(edgeAt);
  }

  private onPressed(at: number, emittedAtLeadingEdge: boolean): void {
    if (this.phase === 'awaitingSecond' || this.phase === 'windowClosing') {
      this.cancelWindow?.();
      this.cancelWindow = undefined;
      this.phase = 'consumed';
      this.emit('double', this.gestureStartAt);
      return;
    }

    this.gestureStartAt = at;
    if (!this.recognisesLong && !this.recognisesDouble) {
      this.phase = 'consumed';
      if (!emittedAtLeadingEdge) this.emit('short', at);
      return;
    }
    this.phase = 'pressed';
    if (this.recognisesLong) {
      const remainingMs = Math.max(0, this.options.longPressMs - (this.options.clock() - at));
      this.cancelLongPress = this.schedule(() => this.onLongPressReached(), remainingMs);
    }
  }

  private onReleased(at: number): void {
    this.cancelLongPress?.();
    this.cancelLongPress = undefined;
    if (this.phase !== 'pressed') {
      this.phase = 'idle';
      return;
    }
    if (!this.recognisesDouble) {
      this.phase = 'idle';
      this.emit('short', this.gestureStartAt);
      return;
    }
    this.phase = 'awaitingSecond';
    this.releasedAt = at;
    const remainingMs = Math.max(0, this.options.doublePressMs - (this.options.clock() - at));
    this.cancelWindow = this.schedule(() => this.onWindowElapsed(), remainingMs);
  }

  private onLongPressReached(): void {
    this.cancelLongPress = undefined;
    if (this.phase !== 'pressed') return;
    this.phase = 'consumed';
    this.emit('long', this.gestureStartAt);
  }

  private onWindowElapsed(): void {
    this.cancelWindow = undefined;
    if (this.phase !== 'awaitingSecond') return;
    const secondPressAt = this.rawDown && !this.stableDown ? this.pendingEdgeAt : undefined;
    if (secondPressAt !== undefined && secondPressAt - this.releasedAt <= this.options.doublePressMs) {
      this.phase = 'windowClosing';
      return;
    }
    this.finishShortAfterWindow();
  }

  private finishShortAfterWindow(): void {
    this.phase = 'idle';
    this.emit('short', this.gestureStartAt);
  }

  private emit(gesture: GestureKind, pressedAt: number): void {
    const now = this.options.clock();
    if (this.lastGestureAt !== undefined && now - this.lastGestureAt < this.minGestureIntervalMs) {
      this.counters.gesturesSuppressed += 1;
      return;
    }
    this.lastGestureAt = now;
    this.counters.gesturesEmitted += 1;
    this.options.onGesture({ gesture, action: this.options.gestures[gesture], pressedAt });
  }
}
