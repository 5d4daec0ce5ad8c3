import { EventEmitter } from 'node:events';
import type { Alarm, Severity } from './payloads.js';
import { isTopicLevel } from './topics.js';

interface AlarmBookEvents {
  /** An alarm became active, or its severity or reason changed. */
  alarmRaised: [Alarm];
  alarmCleared: [{ id: string; raisedAt: string }];
}

/**
 * The alarms active now. An alarm stays until its source clears it
 * explicitly, so a dashboard that reads the retained alarms topic shows what
 * is wrong at this moment, not a history.
 */
export class AlarmBook extends EventEmitter<AlarmBookEvents> {
  private readonly active = new Map<string, Alarm>();
  private readonly now: () => Date;

  constructor(options: { now?: () => Date } = {}) {
    super();
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Raises alarm `id`. Raising an active alarm again with the same severity
   * and reason changes nothing. Ids are topic levels, such as
   * `video-signal-lost` or `destination-unreachable.pacs`.
   */
  raise(id: string, severity: Severity, reason: string): void {
    if (!isTopicLevel(id)) throw new Error(`alarm id "${id}" must be letters, digits, dot, dash or underscore`);
    const current = this.active.get(id);
    if (current && current.severity === severity && current.reason === reason) return;
    const alarm: Alarm = { id, severity, reason, raisedAt: current?.raisedAt ?? this.now().toISOString() };
    this.active.set(id, alarm);
    this.emit('alarmRaised', alarm);
  }

  /** Clears alarm `id`; clearing an alarm that is not active changes nothing. */
  clear(id: string): void {
    const current = this.active.get(id);
    if (!current) return;
    this.active.delete(id);
    this.emit('alarmCleared', { id, raisedAt: current.raisedAt });
  }

  /** Raises or clears `id` depending on `condition`. */
  set(id: string, condition: boolean, severity: Severity, reason: string): void {
    if (condition) this.raise(id, severity, reason);
    else this.clear(id);
  }

  isActive(id: string): boolean {
    return this.active.has(id);
  }

  /** Active alarms, oldest first. */
  list(): Alarm[] {
    return [...this.active.values()].sort((a, b) => a.raisedAt.localeCompare(b.raisedAt) || a.id.localeCompare(b.id));
  }
}
