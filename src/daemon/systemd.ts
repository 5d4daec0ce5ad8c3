import { execFile } from 'node:child_process';
import type { Logger } from '../log.js';

/** Failed notifications logged per process; later ones are only counted, so a missing binary cannot flood journald. */
const LOGGED_FAILURES = 1;
let failures = 0;

/**
 * Sends a state line to systemd (Type=notify) through `systemd-notify`, since
 * Node has no Unix datagram sockets. Does nothing outside systemd, where
 * NOTIFY_SOCKET is not set. The unit needs NotifyAccess=all because the
 * message comes from a child process. `onDone` runs when the child has exited.
 */
export function notifySystemd(state: string, log: Logger, onDone?: () => void): void {
  if (!process.env.NOTIFY_SOCKET) {
    onDone?.();
    return;
  }
  // MAINPID names this process, not the short-lived systemd-notify child, as the service's main process.
  // systemd-notify of systemd 252 waits (BARRIER=1) until systemd has read the message, so a message
  // from an already exited child is still attributed to the service. That wait happens in the child.
  execFile('systemd-notify', [`--pid=${process.pid}`, state], { timeout: 10_000 }, (error) => {
    if (error) {
      failures += 1;
      if (failures <= LOGGED_FAILURES) log.warn({ state, failures, err: { message: error.message } }, 'systemd notification failed');
      else if (Number.isInteger(Math.log10(failures))) log.warn({ state, failures }, 'systemd notifications still failing');
    }
    onDone?.();
  });
}

/**
 * Returns the keep-alive interval in ms, half of WATCHDOG_USEC, or undefined
 * when systemd set no watchdog for this process (WatchdogSec= unset, or
 * WATCHDOG_PID naming another process).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (!env.NOTIFY_SOCKET || !env.WATCHDOG_USEC) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  return Math.max(1, Math.floor(usec / 2_000));
}

/**
 * Sends WATCHDOG=1 every WatchdogSec/2 from a timer on the event loop, so a
 * blocked loop stops the keep-alives and systemd restarts the service.
 * A keep-alive is skipped while the previous `systemd-notify` still runs.
 * Returns a function that stops the timer; does nothing outside systemd.
 */
export function startSystemdWatchdog(log: Logger): () => void {
  const intervalMs = watchdogIntervalMs();
  if (intervalMs === undefined) return () => undefined;
  log.info({ intervalMs }, 'systemd watchdog keep-alives started');
  let pending = false;
  const timer = setInterval(() => {
    if (pending) return;
    pending = true;
    notifySystemd('WATCHDOG=1', log, () => {
      pending = false;
    });
  }, intervalMs);
  return () => clearInterval(timer);
}
