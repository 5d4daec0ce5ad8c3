import { execFile } from 'node:child_process';
import type { Logger } from '../log.js';

/**
 * Sends a state line to systemd (Type=notify) through `systemd-notify`, since
 * Node has no Unix datagram sockets. Does nothing outside systemd, where
 * NOTIFY_SOCKET is not set. The unit needs NotifyAccess=all because the
 * message comes from a child process.
 */
export function notifySystemd(state: string, log: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile('systemd-notify', [state], (error) => {
    if (error) log.warn({ state, err: { message: error.message } }, 'systemd notification failed');
  });
}
