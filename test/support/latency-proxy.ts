import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** Whether the proxy forwards, and what waits while it does not. */
interface Gate {
  held: boolean;
  queue: Array<() => void>;
  /** A connection to cut at one step (`cutOnce`), until one is cut. */
  cut?: { after: RegExp; command: RegExp; armed: boolean; done: () => void };
}

/**
 * A TCP proxy in front of Redis that delays every chunk by `delayMs` each way, in order: a slow
 * network between one process and Redis, for the processes given its URL. `hold()` stops
 * forwarding without closing anything (a network blackhole); `release()` forwards what waited, in
 * order; `cutOnce()` cuts one connection at one step of a conversation.
 */
export class LatencyProxy {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    readonly url: string,
    private readonly gate: Gate,
  ) {}

  /** Stops forwarding in both directions; no socket closes. */
  hold(): void {
    this.gate.held = true;
  }

  /** Forwards again, what waited first. */
  release(): void {
    this.gate.held = false;
    for (const send of this.gate.queue.splice(0)) send();
  }

  /**
   * Once some connection has sent a command matching `after`, cuts the first connection that sends
   * one matching `command` (both sockets destroyed, that command never forwarded): a connection
   * lost at one exact step. Resolves when it has cut one. Matched on the raw RESP of each chunk.
   */
  cutOnce(after: RegExp, command: RegExp): Promise<void> {
    return new Promise((done) => (this.gate.cut = { after, command, armed: false, done }));
  }

  static async start(target: { host: string; port: number }, delayMs: number): Promise<LatencyProxy> {
    const sockets = new Set<Socket>();
    const gate: Gate = { held: false, queue: [] };
    const server = createServer((client) => {
      const upstream = createConnection(target);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      const pipeDelayed = (from: Socket, to: Socket): void => {
        from.on('data', (chunk: Buffer) => {
          const cut = gate.cut;
          if (cut !== undefined && from === client) {
            const text = chunk.toString('latin1');
            if (cut.armed && cut.command.test(text)) {
              gate.cut = undefined;
              client.destroy();
              upstream.destroy();
              return cut.done();
            }
            if (cut.after.test(text)) cut.armed = true;
          }
          const send = (): void => void setTimeout(() => to.destroyed || to.write(chunk), delayMs);
          if (gate.held) gate.queue.push(send);
          else send();
        });
        from.on('close', () => setTimeout(() => to.destroy(), delayMs));
      };
      pipeDelayed(client, upstream);
      pipeDelayed(upstream, client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as { port: number };
    return new LatencyProxy(server, sockets, `redis://127.0.0.1:${address.port}`, gate);
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
