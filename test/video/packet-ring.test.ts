import t from 'tap';
import { PacketRing, type EncodedPacket } from '../../src/video/packet-ring.js';

/** Packets of a 10 fps stream with a key frame every `gop` frames, `bytes` each. */
function packets(count: number, gop: number, bytes = 100, startAt = 0): EncodedPacket[] {
  return Array.from({ length: count }, (_, index) => ({
    data: Buffer.alloc(bytes),
    pts: BigInt(index),
    dts: BigInt(index),
    keyFrame: index % gop === 0,
    arrivedAt: startAt + index * 100,
  }));
}

t.test('packet ring keeps the pre-record from a key frame', async (t) => {
  const ring = new PacketRing({ keepMs: 2_000, maxBytes: 1_000_000 });
  for (const packet of packets(100, 10)) ring.push(packet);
  const status = ring.status();
  // Newest at 9.9 s; the ring must reach back to 7.9 s, so it starts at the key frame of 7.0 s.
  t.equal(ring.from(0)[0]?.arrivedAt, 7_000);
  t.equal(status.packets, 30);
  t.equal(status.bytes, 3_000);
  t.equal(status.spanMs, 2_900);
});

t.test('packet ring start is the last key frame at or before the time', async (t) => {
  const ring = new PacketRing({ keepMs: 5_000, maxBytes: 1_000_000 });
  for (const packet of packets(60, 10)) ring.push(packet);
  t.equal(ring.from(3_500)[0]?.arrivedAt, 3_000);
  t.equal(ring.from(4_000)[0]?.arrivedAt, 4_000);
  t.equal(ring.from(4_000).length, 20);
  t.equal(ring.from(0)[0]?.arrivedAt, 0, 'older than the ring gives its oldest key frame');
  t.ok(ring.from(5_900).every((packet, index) => index > 0 || packet.keyFrame), 'always starts on a key frame');
});

t.test('packet ring drops packets before the first key frame', async (t) => {
  const ring = new PacketRing({ keepMs: 5_000, maxBytes: 1_000_000 });
  const stream = packets(25, 10).slice(5);
  for (const packet of stream) ring.push(packet);
  t.equal(ring.from(0)[0]?.arrivedAt, 1_000);
  t.equal(ring.status().packets, 15);
});

t.test('packet ring bound in bytes drops whole groups', async (t) => {
  const ring = new PacketRing({ keepMs: 60_000, maxBytes: 2_500 });
  for (const packet of packets(100, 10)) ring.push(packet);
  const status = ring.status();
  t.ok(status.bytes <= 2_500, `${status.bytes} bytes kept`);
  t.equal(status.packets, 20, 'two groups of ten');
  t.equal(status.groupsDroppedForSize, 8);
  t.equal(ring.from(0)[0]?.keyFrame, true);
});

t.test('packet ring keeps one group larger than the bound', async (t) => {
  const ring = new PacketRing({ keepMs: 60_000, maxBytes: 500 });
  for (const packet of packets(15, 10)) ring.push(packet);
  t.equal(ring.status().packets, 5, 'the newest group stays');
  ring.clear();
  t.same(ring.status(), { packets: 0, bytes: 0, spanMs: 0, groupsDroppedForSize: 1 });
  t.same(ring.from(0), []);
});
