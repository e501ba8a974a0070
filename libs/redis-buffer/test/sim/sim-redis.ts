import { SimLink } from './sim-link.js';
import { SimOwner, type Scheduler } from './scheduler.js';

export type SimCommand =
  | { readonly op: 'hello' }
  | { readonly op: 'ping' }
  | { readonly op: 'publish'; readonly channel: string; readonly message: string }
  | { readonly op: 'subscribe'; readonly channels: readonly string[] }
  | { readonly op: 'unsubscribe'; readonly channels: readonly string[] }
  | { readonly op: 'numsub'; readonly channel: string };

/** Told of what the server did, for the checker and the trace. */
export interface RedisObserver {
  published(connection: SimConnection, channel: string, message: string, receivers: readonly SimConnection[], counted: number): void;
}

/**
 * One simulated client connection, both ends in one object. A connection is used once: after a
 * reset the client opens a new one, as ioredis does.
 */
export class SimConnection {
  /** The server still holds this connection (and its subscriptions). */
  serverOpen = true;
  /** The client still uses it. */
  clientOpen = true;
  /** Channels the server has this connection subscribed to. */
  readonly channels = new Set<string>();
  readonly up: SimLink;
  readonly down: SimLink;
  private readonly replies: Array<{ resolve: (value: number) => void; reject: (error: Error) => void }> = [];
  /** A published message reached the client. */
  onMessage: (channel: string, message: string) => void = () => undefined;
  /** The client saw the connection close (after whatever the server sent before). */
  onReset: () => void = () => undefined;

  constructor(
    private readonly redis: SimRedis,
    readonly id: number,
    readonly name: string,
    readonly process: SimOwner,
    scheduler: Scheduler,
    upDelay: () => number,
    downDelay: () => number,
  ) {
    this.up = new SimLink(scheduler, redis.owner, upDelay);
    this.down = new SimLink(scheduler, process, downDelay);
  }

  /** Sends a command; resolves with the server's answer (a count, or 0), rejects if the connection closes first. */
  command(command: SimCommand): Promise<number> {
    if (!this.clientOpen) return Promise.reject(new Error(`connection ${this.name} is closed`));
    return new Promise((resolve, reject) => {
      this.replies.push({ resolve, reject });
      this.up.send(() => this.redis.execute(this, command));
    });
  }

  /** Called by the server, on the server's side. */
  reply(value: number): void {
    this.down.send(() => {
      if (this.clientOpen) this.replies.shift()?.resolve(value);
    });
  }

  push(channel: string, message: string): void {
    this.down.send(() => {
      if (this.clientOpen) this.onMessage(channel, message);
    });
  }

  /** The server closed the connection: the client sees it after what was already on its way. */
  closedByServer(): void {
    this.down.send(() => this.closeClientSide(new Error(`connection ${this.name} was reset`), true));
  }

  /** The client stops using the connection; the server notices when the close reaches it. */
  closeByClient(): void {
    this.closeClientSide(new Error(`connection ${this.name} was closed`), false);
    this.up.send(() => this.redis.drop(this));
  }

  /** The process died: its sockets close without it doing anything. */
  killed(): void {
    this.clientOpen = false;
    this.up.send(() => this.redis.drop(this));
  }

  private closeClientSide(error: Error, notify: boolean): void {
    if (!this.clientOpen) return;
    this.clientOpen = false;
    for (const pending of this.replies.splice(0)) pending.reject(error);
    if (notify) this.onReset();
  }
}

/**
 * A Redis server as far as pub/sub goes (DESIGN.md section 8): PUBLISH returns how many subscribed
 * connections the message was queued for when the server ran it, and queues it on each of them;
 * every connection delivers in order. Faults: a hung server (its owner paused), connections reset
 * (failover), subscriptions lost without the client knowing, and channels whose count covers only
 * part of their subscribers for a while (a slot being moved on a cluster).
 */
export class SimRedis {
  readonly owner = new SimOwner('redis');
  private readonly subscribers = new Map<string, Set<SimConnection>>();
  /** Per channel, subscribers left out of PUBLISH's count (they still receive). */
  private readonly uncounted = new Map<string, Set<SimConnection>>();
  private readonly connections = new Set<SimConnection>();
  private nextId = 1;
  observer: RedisObserver | undefined;

  constructor(private readonly scheduler: Scheduler) {}

  connection(name: string, process: SimOwner, upDelay: () => number, downDelay: () => number): SimConnection {
    const connection = new SimConnection(this, this.nextId++, name, process, this.scheduler, upDelay, downDelay);
    this.connections.add(connection);
    return connection;
  }

  /** Runs a command that reached the server (as the server's owner: a hung server runs none). */
  execute(connection: SimConnection, command: SimCommand): void {
    if (!connection.serverOpen) return;
    switch (command.op) {
      case 'hello':
      case 'ping':
        return connection.reply(0);
      case 'publish': {
        const receivers = [...(this.subscribers.get(command.channel) ?? [])];
        const hidden = this.uncounted.get(command.channel);
        const counted = hidden === undefined ? receivers.length : receivers.filter((receiver) => !hidden.has(receiver)).length;
        for (const receiver of receivers) receiver.push(command.channel, command.message);
        this.observer?.published(connection, command.channel, command.message, receivers, counted);
        return connection.reply(counted);
      }
      case 'subscribe':
        for (const channel of command.channels) this.add(connection, channel);
        return connection.reply(0);
      case 'unsubscribe':
        for (const channel of command.channels) this.remove(connection, channel);
        return connection.reply(0);
      case 'numsub':
        return connection.reply(this.subscribers.get(command.channel)?.size ?? 0);
    }
  }

  /** The server forgets a connection (it closed, or the client's process died). */
  drop(connection: SimConnection): void {
    if (!connection.serverOpen) return;
    connection.serverOpen = false;
    for (const channel of [...connection.channels]) this.remove(connection, channel);
    this.connections.delete(connection);
  }

  /** The server closes a connection (a failover, an output-buffer limit): the client sees a reset. */
  reset(connection: SimConnection): void {
    if (!connection.serverOpen) return;
    this.drop(connection);
    connection.closedByServer();
  }

  /** Open connections, in the order they were opened. */
  openConnections(): SimConnection[] {
    return [...this.connections];
  }

  /** The subscription is gone on the server and the client is not told (a replica that never had it). */
  loseSubscription(connection: SimConnection, channel: string): void {
    this.remove(connection, channel);
  }

  /** Restores a subscription lost by `loseSubscription` (the client subscribed again on the node that now owns the slot). */
  restoreSubscription(connection: SimConnection, channel: string): void {
    if (connection.serverOpen) this.add(connection, channel);
  }

  /** Leaves these subscribers of `channel` out of PUBLISH's count, until `countAgain`. */
  leaveOutOfCount(channel: string, connections: readonly SimConnection[]): void {
    let hidden = this.uncounted.get(channel);
    if (hidden === undefined) this.uncounted.set(channel, (hidden = new Set()));
    for (const connection of connections) hidden.add(connection);
  }

  countAgain(channel: string): void {
    this.uncounted.delete(channel);
  }

  subscribersOf(channel: string): SimConnection[] {
    return [...(this.subscribers.get(channel) ?? [])];
  }

  private add(connection: SimConnection, channel: string): void {
    let set = this.subscribers.get(channel);
    if (set === undefined) this.subscribers.set(channel, (set = new Set()));
    set.add(connection);
    connection.channels.add(channel);
  }

  private remove(connection: SimConnection, channel: string): void {
    const set = this.subscribers.get(channel);
    set?.delete(connection);
    if (set?.size === 0) this.subscribers.delete(channel);
    connection.channels.delete(channel);
  }
}
