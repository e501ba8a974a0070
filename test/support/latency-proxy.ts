import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of Redis that delays every chunk by `delayMs` each way, in order: a slow
 * network between one process and Redis, for the processes given its URL.
 */
export class LatencyProxy {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    readonly url: string,
  ) {}

  static async start(target: { host: string; port: number }, delayMs: number): Promise<LatencyProxy> {
    const sockets = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = createConnection(target);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      const pipeDelayed = (from: Socket, to: Socket): void => {
        from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs));
        from.on('close', () => setTimeout(() => to.destroy(), delayMs));
      };
      pipeDelayed(client, upstream);
      pipeDelayed(upstream, client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as { port: number };
    return new LatencyProxy(server, sockets, `redis://127.0.0.1:${address.port}`);
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
