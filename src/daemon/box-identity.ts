import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { StationConfig } from '../profile/schema.js';

/**
 * Returns this box's id: the profile's `station.boxId`, else the first 12
 * hex digits of /etc/machine-id (unique per installed system, so cloned
 * images get new ids once systemd-machine-id-setup runs), else the host name.
 * The environment variable ENDOCAP_MACHINE_ID_FILE names another machine-id
 * file, for tests that run several boxes on one machine.
 */
export async function resolveBoxId(station: StationConfig, machineIdFile = process.env.ENDOCAP_MACHINE_ID_FILE || '/etc/machine-id'): Promise<string> {
  if (station.boxId) return station.boxId;
  try {
    const machineId = (await readFile(machineIdFile, 'utf8')).trim();
    if (/^[0-9a-f]{32}$/.test(machineId)) return `box-${machineId.slice(0, 12)}`;
  } catch {
    // No machine id (containers, minimal images): the host name is the next best stable value.
  }
  return os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64) || 'endocap';
}
