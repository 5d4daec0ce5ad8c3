import net from 'node:net';
import { Aedes } from 'aedes';

/**
 * An in-process MQTT broker (aedes) on 127.0.0.1 for the demo, so that the
 * telemetry path runs without an outside broker. Not for production.
 */
export class DemoMqttBroker {
  private broker: Aedes | undefined;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  /** Starts the broker on 127.0.0.1 and returns its port. */
  async start(port = 0): Promise<number> {
    const broker = await Aedes.createBroker();
    this.broker = broker;
    const server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      broker.handle(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return (server.address() as net.AddressInfo).port;
  }

  /** Calls `listener` for every message published to the broker. */
  onPublish(listener: (topic: string, payload: Buffer) => void): void {
    this.broker?.on('publish', (packet, client) => {
      if (client) listener(packet.topic, Buffer.from(packet.payload));
    });
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (this.broker ? this.broker.close(() => resolve()) : resolve()));
  }
}
