import net from 'node:net';
import t, { type Test } from 'tap';
import { MllpListener } from '../../src/hl7/mllp-listener.js';
import { createLogger } from '../../src/log.js';

const frame = (text: string): Buffer => Buffer.concat([Buffer.from([0x0b]), Buffer.from(text, 'latin1'), Buffer.from([0x1c, 0x0d])]);

async function startListener(t: Test, options: { maxConnections: number; ackBytes?: number; evictIdleMs?: number }): Promise<{ port: number; handled: () => number }> {
  let handled = 0;
  const listener = new MllpListener({
    host: '127.0.0.1',
    port: 0,
    allowedPeers: undefined,
    maxConnections: options.maxConnections,
    maxMessageBytes: 1024 * 1024,
    evictIdleMs: options.evictIdleMs,
    log: createLogger('silent'),
    handle: async () => {
      handled += 1;
      return Buffer.alloc(options.ackBytes ?? 16, 0x41);
    },
  });
  const port = await listener.start();
  t.teardown(() => listener.stop());
  return { port, handled: () => handled };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.on('error', reject);
  });
}

const closed = (socket: net.Socket): Promise<void> => new Promise((resolve) => socket.once('close', () => resolve()));

t.test('a peer that never reads its ACKs stops being read', async (t) => {
  // 64 KiB ACKs fill the socket buffers after a few dozen messages. Without
  // waiting for them to drain, the listener would process all 5,000.
  const { port, handled } = await startListener(t, { maxConnections: 2, ackBytes: 64 * 1024 });
  const socket = await connect(port);
  t.teardown(() => socket.destroy());
  socket.pause();
  const message = frame('MSH|^~\\&|A|B|C|D|20261204||ADT^A08|1|P|2.5\r');
  await new Promise<void>((resolve) => socket.write(Buffer.concat(Array.from({ length: 5_000 }, () => message)), () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.ok(handled() < 1_000, `the listener stopped after ${handled()} unread ACKs`);
  socket.resume();
  while (handled() < 5_000) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(handled(), 5_000, 'every message is answered once the peer reads');
});

t.test('a new connection replaces the longest idle one when every slot is taken', async (t) => {
  const { port } = await startListener(t, { maxConnections: 1, evictIdleMs: 100 });
  const idle = await connect(port);
  t.teardown(() => idle.destroy());
  const idleClosed = closed(idle);
  await new Promise((resolve) => setTimeout(resolve, 150));
  const fresh = await connect(port);
  t.teardown(() => fresh.destroy());
  await idleClosed;
  const ack = new Promise<Buffer>((resolve) => fresh.once('data', resolve));
  fresh.write(frame('MSH|^~\\&|A|B|C|D|20261204||ADT^A08|2|P|2.5\r'));
  t.equal((await ack)[0], 0x0b, 'the new connection is served');
});

t.test('a busy slot is not taken over: the new connection is refused', async (t) => {
  const { port } = await startListener(t, { maxConnections: 1, evictIdleMs: 60_000 });
  const first = await connect(port);
  t.teardown(() => first.destroy());
  await new Promise((resolve) => setTimeout(resolve, 50));
  const second = await connect(port);
  await closed(second);
  t.equal(first.destroyed, false, 'the recently active connection stays open');
});
