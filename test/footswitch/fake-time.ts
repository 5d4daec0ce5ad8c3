import type { CancelTimer, Scheduler } from '../../src/footswitch/gestures.js';

interface Task {
  at: number;
  order: number;
  callback: () => void;
  cancelled: boolean;
}

/** Fake clock and timers: time moves only when a test calls `advance`. */
export class FakeTime {
  now = 1_700_000_000_000;
  private tasks: Task[] = [];
  private order = 0;

  readonly clock = (): number => this.now;

  readonly schedule: Scheduler = (callback, delayMs): CancelTimer => {
    const task: Task = { at: this.now + Math.max(0, delayMs), order: this.order++, callback, cancelled: false };
    this.tasks.push(task);
    return () => {
      task.cancelled = true;
    };
  };

  /** Moves the clock forward by `ms`, running every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      this.tasks = this.tasks.filter((task) => !task.cancelled);
      const due = this.tasks.filter((task) => task.at <= end).sort((left, right) => left.at - right.at || left.order - right.order)[0];
      if (due === undefined) break;
      this.tasks = this.tasks.filter((task) => task !== due);
      this.now = Math.max(this.now, due.at);
      due.callback();
    }
    this.now = end;
  }

  /** Timers still waiting. */
  get pending(): number {
    return this.tasks.filter((task) => !task.cancelled).length;
  }
}
