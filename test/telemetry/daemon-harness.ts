import { open } from 'node:fs/promises';

/** Presses the serial pedal `count` times through the test end of a socat pty pair (byte 1 down, 0 up). */
export async function pressPedal(testPath: string, count = 1, intervalMs = 150): Promise<void> {
  const pedal = await open(testPath, 'w');
  try {
    for (let index = 0; index < count; index += 1) {
      await pedal.write(Buffer.from([0x31]));
      await new Promise((resolve) => setTimeout(resolve, 40));
      await pedal.write(Buffer.from([0x30]));
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  } finally {
    await pedal.close();
  }
}

export interface StatusView {
  video: { signal: boolean };
  alarms: string[];
  destinations: Record<string, { queued: number; linkUp: boolean | null; lastResult: string; setAside: number }>;
  exam: { active: boolean };
}
