import { readdir, readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { SystemStatus } from './payloads.js';

export interface StatusSamplerOptions {
  /** Folder whose filesystem's free space is reported: the spool. */
  diskPath: string;
  /** Folder of the kernel's thermal zones; Linux puts them under /sys/class/thermal. */
  thermalDirectory?: string;
}

const NS_PER_MS = 1e6;

/**
 * Samples the box's health: disk, CPU, memory, temperature and event-loop
 * delay. CPU and event-loop figures cover the time since the previous sample.
 */
export class StatusSampler {
  private readonly diskPath: string;
  private readonly thermalDirectory: string;
  private histogram: IntervalHistogram | undefined;
  private lastCpus = cpuTimes();
  private lastProcess = process.cpuUsage();
  private lastSampleAt = performance.now();
  private thermalZones: string[] | undefined;

  constructor(options: StatusSamplerOptions) {
    this.diskPath = options.diskPath;
    this.thermalDirectory = options.thermalDirectory ?? '/sys/class/thermal';
  }

  start(): void {
    this.histogram = monitorEventLoopDelay({ resolution: 20 });
    this.histogram.enable();
  }

  stop(): void {
    this.histogram?.disable();
    this.histogram = undefined;
  }

  async sample(): Promise<SystemStatus> {
    const now = performance.now();
    const elapsedMs = Math.max(1, now - this.lastSampleAt);
    this.lastSampleAt = now;

    const cpus = cpuTimes();
    const busy = cpus.busy - this.lastCpus.busy;
    const total = cpus.total - this.lastCpus.total;
    this.lastCpus = cpus;
    const processUsage = process.cpuUsage(this.lastProcess);
    this.lastProcess = process.cpuUsage();

    const histogram = this.histogram;
    const delayP99 = histogram && histogram.count > 0 ? histogram.percentile(99) / NS_PER_MS : 0;
    const delayMax = histogram && histogram.count > 0 ? histogram.max / NS_PER_MS : 0;
    histogram?.reset();

    return {
      diskFreeBytes: await this.diskFree(),
      cpuPercent: round(total > 0 ? (100 * busy) / total : 0),
      processCpuPercent: round((100 * (processUsage.user + processUsage.system)) / 1000 / elapsedMs),
      memoryTotalBytes: os.totalmem(),
      memoryAvailableBytes: os.freemem(),
      processRssBytes: process.memoryUsage.rss(),
      temperatureCelsius: await this.temperature(),
      eventLoopDelayP99Ms: round(delayP99),
      eventLoopDelayMaxMs: round(delayMax),
      uptimeSeconds: Math.round(process.uptime()),
    };
  }

  private async diskFree(): Promise<number | null> {
    try {
      const stats = await statfs(this.diskPath);
      return stats.bavail * stats.bsize;
    } catch {
      // The spool folder may not exist yet on a fresh box; the status says unknown.
      return null;
    }
  }

  /** Hottest thermal zone, in degrees Celsius; null on boxes (and containers) without any. */
  private async temperature(): Promise<number | null> {
    try {
      this.thermalZones ??= (await readdir(this.thermalDirectory)).filter((name) => name.startsWith('thermal_zone'));
    } catch {
      this.thermalZones = [];
    }
    let hottest: number | null = null;
    for (const zone of this.thermalZones) {
      try {
        // The kernel reports millidegrees Celsius.
        const value = Number.parseInt(await readFile(path.join(this.thermalDirectory, zone, 'temp'), 'utf8'), 10) / 1000;
        if (Number.isFinite(value) && (hottest === null || value > hottest)) hottest = value;
      } catch {
        // A zone whose sensor cannot be read right now is skipped; the others still count.
      }
    }
    return hottest === null ? null : round(hottest);
  }
}

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const { user, nice, sys, idle, irq } = cpu.times;
    busy += user + nice + sys + irq;
    total += user + nice + sys + idle + irq;
  }
  return { busy, total };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
