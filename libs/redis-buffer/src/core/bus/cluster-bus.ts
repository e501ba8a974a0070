import type { Cluster, ClusterOptions, Redis } from 'ioredis';
import { answeredOrCut, settledByClose } from '../async/bounded-wait.js';
import { Slots } from '../slots.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { RedisPermissionError } from '../errors/redis-permission.error.js';
import { endsStartUp } from '../errors/start-failure.js';
import { nodeKey, type ConnectionFactory } from './connection-factory.js';
import { keySlot } from './key-slot.js';
import { closePolitely } from './polite-close.js';
import { isPermissionError, namespaceOfChannel, runPermissionProbes, type PermissionNeeds } from './permission-check.js';
import { StatusReportingBus, untilConnected, type BusClients, type RedisBus } from './redis-bus.js';
import { tlsFailure } from './tls-failure.js';
import { ShardSubscriber } from './shard-subscriber.js';

export interface ClusterBusOptions {
  /**
   * Builds the `Cluster` and the subscriber connections, with the application's `Cluster` options;
   * its `redisOptions` (password, TLS…) apply to every node connection.
   */
  readonly connections: ConnectionFactory;
  /** Shown in `CLIENT LIST` to tell this library's connections apart. */
  readonly connectionName: string;
}

/** Longest pause between two reconnection attempts of a subscriber connection to a node that is down. */
const MAX_RECONNECT_DELAY_MS = 2000;
/**
 * After a node's connection failed, publishes to the slots it owns fail at once for this long
 * instead of each opening a connection attempt (and an error event) of its own: a dead master costs
 * one attempt per second, not one per request, until the slot map names its successor.
 */
const NODE_DOWN_PAUSE_MS = 1000;

/**
 * `RedisBus` on a Redis Cluster, with every channel sharded: `SPUBLISH` and `SSUBSCRIBE`, so that a
 * channel lives on the master that owns its hash slot and the count `SPUBLISH` returns is every
 * subscriber of that channel in the cluster (a classic `PUBLISH` is broadcast to every node but
 * counts only the receiving node's subscribers: completion would rest on a wrong number).
 *
 * Publishing goes through ioredis's `Cluster` (slot routing, `MOVED`/`ASK` redirects, topology
 * refresh). Subscribing does not use ioredis's `shardedSubscribers`: this class keeps one
 * subscriber connection per master that owns one of its channels, because the library needs what
 * that group does not give:
 * - to know when subscriptions are confirmed (the group re-subscribes in the background and drops
 *   the errors), since "connected" must mean that replies can arrive;
 * - to learn when a confirmed subscription was lost (a node closed, or a slot moved away and Redis
 *   dropped the channel with an unsolicited `SUNSUBSCRIBE`), to fail the requests whose replies it
 *   would lose (`subscriberLost`);
 * - bounded retries: while a dead master waits for its failover the group re-creates its subscriber
 *   in a tight loop, each time with an error event, burning CPU until the failover ends. Here a
 *   connection to a node that is down retries with exponential backoff capped at 2 s.
 *
 * Placement follows the `Cluster`'s slot map: after each refresh (every `slotsRefreshInterval`,
 * 1 s by default here, and after a subscriber connection closes or a slot moves) each channel is
 * re-subscribed on the master that now owns it.
 *
 * Status: "connected" while the `Cluster` is ready and every subscriber connection holding a
 * channel whose subscription was once confirmed has re-confirmed all of its channels (SSUBSCRIBE
 * acknowledged). A master failover is therefore seen as "reconnecting" by every process with a
 * channel on that master, until the replica that replaced it has their subscriptions.
 */
export class ClusterBus extends StatusReportingBus implements RedisBus {
  private publisher: Cluster | undefined;
  /** Subscriber connection per master node (`host:port`). */
  private readonly shards = new Map<string, ShardSubscriber>();
  /** Channel → the node whose subscriber connection holds it. */
  private readonly placement = new Map<string, string>();
  /** Channels whose subscription Redis has confirmed at least once (and not unsubscribed since). */
  private readonly established = new Set<string>();
  /** Slots of the subscribed channels, which are placed again after every slot map refresh. */
  private readonly slots = new Map<string, number>();
  /** SPUBLISH and PUBSUB SHARDNUMSUB commands in flight, by the node they were sent to, for failing them when it closes. */
  private readonly commandsInFlight = new Map<string, Slots<(error: Error) => void>>();
  private readonly watchedNodes = new WeakSet<Redis>();
  /** Nodes whose connection failed, and until when publishes to them fail without trying. */
  private readonly downUntil = new Map<string, number>();

  constructor(private readonly options: ClusterBusOptions) {
    super();
  }

  async publish(channel: string, message: string): Promise<number> {
    const publisher = this.publisher;
    if (this.state.closed || publisher === undefined || publisher.status !== 'ready' || !this.state.everConnected) {
      throw new ConnectionLostError(`cannot publish while the connection is ${this.state.current}`);
    }
    const node = this.ownerOf(channel);
    if (node !== undefined && (this.downUntil.get(node) ?? 0) > Date.now()) {
      throw new ConnectionLostError(`the master that owns "${channel}" (${node}) is unreachable; waiting for it, or for a replica to take over`);
    }
    // Failed, never resent: with retryDelayOnFailover at 0 the Cluster rejects a command whose node
    // connection closed, and this cut settles one that was written and then lost with its socket.
    try {
      return Number(await settledByClose(node === undefined ? undefined : this.commandsInFlightOn(node), publisher.spublish(channel, message)));
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('SPUBLISH', [channel], { cause, namespace: namespaceOfChannel(channel) });
      throw cause instanceof ConnectionLostError ? cause : new ConnectionLostError(`SPUBLISH to ${node ?? 'the cluster'} failed`, { cause });
    }
  }

  async subscribe(channels: readonly string[]): Promise<void> {
    if (channels.length === 0) return;
    this.requireReady('subscribe');
    const byNode = new Map<string, string[]>();
    for (const channel of channels) {
      const node = this.ownerOf(channel);
      if (node === undefined) throw new ConnectionLostError(`no master owns the slot of "${channel}" (the cluster is not fully covered)`);
      const list = byNode.get(node) ?? [];
      list.push(channel);
      byNode.set(node, list);
    }
    try {
      await Promise.all(
        [...byNode].map(([node, list]) => {
          for (const channel of list) {
            this.placement.set(channel, node);
            this.slots.set(channel, this.slotOf(channel));
          }
          return this.shard(node).add(list, this.options.connections.connectTimeout);
        }),
      );
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('SSUBSCRIBE', channels, { cause, namespace: namespaceOfChannel(channels[0]!) });
      throw cause instanceof ConnectionLostError ? cause : new ConnectionLostError('SSUBSCRIBE failed', { cause });
    }
    for (const channel of channels) if (this.placement.has(channel)) this.established.add(channel);
  }

  async unsubscribe(channels: readonly string[]): Promise<void> {
    const byNode = new Map<string, string[]>();
    for (const channel of channels) {
      const node = this.placement.get(channel);
      this.placement.delete(channel);
      this.established.delete(channel);
      this.slots.delete(channel);
      if (node === undefined) continue;
      const list = byNode.get(node) ?? [];
      list.push(channel);
      byNode.set(node, list);
    }
    await Promise.all([...byNode].map(([node, list]) => this.shards.get(node)?.remove(list)));
    for (const node of byNode.keys()) this.dropIfEmpty(node);
    this.refreshStatus();
  }

  async numsub(channel: string): Promise<number> {
    const node = this.ownerOf(channel);
    const connection = node === undefined ? undefined : this.publisher?.nodes('master').find((redis) => nodeKey(redis.options) === node);
    if (this.state.current !== 'connected' || connection === undefined) {
      throw new ConnectionLostError(`cannot query subscribers while the connection is ${this.state.current}`);
    }
    try {
      // Sharded subscribers are counted only by the master that owns the channel's slot.
      const inFlight = this.commandsInFlightOn(node!);
      const answer = (await answeredOrCut(inFlight, connection.call('PUBSUB', 'SHARDNUMSUB', channel), 'PUBSUB SHARDNUMSUB', this.options.connections.connectTimeout)) as [string, number | string];
      return Number(answer[1]);
    } catch (cause) {
      if (isPermissionError(cause)) throw new RedisPermissionError('PUBSUB SHARDNUMSUB', [channel], { cause, namespace: namespaceOfChannel(channel) });
      throw new ConnectionLostError('PUBSUB SHARDNUMSUB failed', { cause });
    }
  }

  async checkPermissions(probeChannel: string, needs: PermissionNeeds, namespace: string): Promise<void> {
    const publisher = this.publisher;
    const node = this.ownerOf(probeChannel);
    const owner = node === undefined ? undefined : publisher?.nodes('master').find((redis) => nodeKey(redis.options) === node);
    if (this.state.current !== 'connected' || publisher === undefined || owner === undefined) {
      throw new ConnectionLostError(`cannot check permissions while the connection is ${this.state.current}`);
    }
    // CLUSTER SLOTS and CLUSTER INFO were checked while connecting.
    await runPermissionProbes(
      [
        // On the owner's own node connection, which queues until it is connected (the Cluster's
        // offline queue is off, and a node may still be connecting just after "connected").
        { command: 'SPUBLISH', channels: [probeChannel], run: () => owner.spublish(probeChannel, 'probe') },
        { command: 'PING', channels: [], run: () => owner.ping() },
        ...(needs.countSubscribers ? [{ command: 'PUBSUB SHARDNUMSUB', channels: [probeChannel], run: () => owner.call('PUBSUB', 'SHARDNUMSUB', probeChannel) }] : []),
        // Unsubscribing a channel the connection does not hold changes nothing.
        ...(needs.unsubscribe ? [{ command: 'SUNSUBSCRIBE', channels: [probeChannel], run: () => owner.call('SUNSUBSCRIBE', probeChannel) }] : []),
      ],
      namespace,
      this.options.connections.connectTimeout,
    );
  }

  async close(): Promise<void> {
    if (this.state.closed) return;
    this.state.close();
    await Promise.all([...[...this.shards.values()].map((shard) => shard.close()), closePolitely(this.publisher)]);
    this.shards.clear();
    this.removeAllListeners('message');
  }

  async ping(): Promise<void> {
    await Promise.all([...this.shards.values()].map((shard) => shard.connection.ping()));
  }

  unwrap(): BusClients {
    if (this.publisher === undefined) throw new Error('Not connected yet: call connect() (or startAllMicroservices()) before unwrap().');
    return { publisher: this.publisher, subscribers: new Map([...this.shards].map(([node, shard]) => [node, shard.connection])) };
  }

  protected async open(): Promise<void> {
    this.state.connecting();
    const { connections, connectionName } = this.options;
    const publisherOptions: ClusterOptions = {
      // Placement follows the slot map; a refresh every second notices a failover (or a master that
      // hangs while a replica takes over) within about a second. The application may choose another.
      slotsRefreshInterval: connections.clusterOptions.slotsRefreshInterval ?? 1000,
      // A request published while the cluster is away would be sent long after its deadline.
      enableOfflineQueue: false,
      // A command whose node connection closed would be sent again to the new owner: a request
      // could reach its receivers twice. It fails instead, and the request with it.
      retryDelayOnFailover: 0,
    };
    // ioredis 6's own sharded subscribers stay off (this bus subscribes itself); ioredis 5 has none,
    // and no such option in its types.
    (publisherOptions as Record<string, unknown>).shardedSubscribers = false;
    // ioredis's per-node ready check runs INFO, which a least-privilege ACL user may not run (ioredis
    // then prints a warning on every connection); the Cluster's own check (CLUSTER INFO) stays.
    const readyCheck = connections.readyCheckChosen ? {} : { enableReadyCheck: false };
    const publisher = connections.cluster(`${connectionName}:pub`, publisherOptions, { ...readyCheck, autoResendUnfulfilledCommands: false });
    this.publisher = publisher;
    const current = (): boolean => this.publisher === publisher && !this.state.closed;
    // What cannot work (a refused CLUSTER command, a TLS failure) fails connect() at once rather than by connectTimeout.
    let refuse!: (error: Error) => void;
    const refused = new Promise<never>((_, reject) => (refuse = reject));
    const failAtStart = (error: Error): void => {
      if (current() && !this.state.everConnected) refuse(error);
    };
    let readyCheckProbed = false;
    publisher.on('refresh', () => {
      if (!current()) return;
      this.place();
      // The Cluster's ready check (CLUSTER INFO) swallows its error and reconnects forever: asked
      // once here, on a node connection (which queues until connected), to name a refusal.
      if (!this.state.everConnected && !readyCheckProbed && connections.clusterOptions.enableReadyCheck !== false) {
        readyCheckProbed = true;
        const node = publisher.nodes('master')[0] ?? publisher.nodes()[0];
        node?.call('CLUSTER', 'INFO').catch((error: Error) => {
          if (/^NOPERM\b/.test(error.message)) failAtStart(new RedisPermissionError('CLUSTER INFO', [], { cause: error }));
          // The node connection closed under it (the Cluster reconnects after a failed check): asked again on the next refresh.
          else readyCheckProbed = false;
        });
      }
    });
    publisher.on('+node', (node: Redis) => this.watchNode(node, publisher));
    publisher.on('ready', () => {
      for (const node of publisher.nodes('all')) if (node.status === 'wait') node.connect().catch(() => undefined);
    });
    for (const event of ['ready', 'close', 'reconnecting', 'end', 'connect']) {
      publisher.on(event, () => {
        if (current()) this.refreshStatus();
      });
    }
    const report = (error: Error): void => {
      if (current() && this.listenerCount('error') > 0) this.emit('error', error);
      if (this.state.everConnected) return;
      const nodeError = (error.cause ?? (error as { lastNodeError?: unknown }).lastNodeError) as Error | undefined;
      const tls = tlsFailure(nodeError ?? error, connections.describe()) ?? tlsFailure(error, connections.describe());
      if (tls !== undefined) failAtStart(tls);
      else if (nodeError !== undefined && /^NOPERM\b/.test(nodeError.message)) failAtStart(new RedisPermissionError('CLUSTER SLOTS', [], { cause: nodeError }));
    };
    publisher.on('error', report);
    publisher.on('node error', (error: Error, node?: string) => report(node === undefined ? error : new Error(`${node}: ${error.message}`, { cause: error })));

    await untilConnected(
      this,
      connections.connectTimeout,
      () => {
        publisher.disconnect();
        setImmediate(() => {
          if (!this.state.attempting) this.state.abandoned();
        });
        return new ConnectionLostError(
          `could not connect to ${connections.describe()} within connectTimeout (${connections.connectTimeout} ms); start the cluster (or fix "cluster.nodes") first, or raise "connectTimeout" to wait longer`,
        );
      },
      () => void publisher.connect().catch(() => undefined),
      refused,
    ).catch((error: unknown) => {
      if (endsStartUp(error)) {
        publisher.disconnect();
        // After the rejection has reached whoever awaits connect(), so they see this error.
        setImmediate(() => {
          if (!this.state.attempting) this.state.abandoned();
        });
      }
      throw error;
    });
  }

  /** Fails the commands in flight on a node (SPUBLISH, PUBSUB SHARDNUMSUB) when its connection closes. */
  private watchNode(node: Redis, publisher: Cluster): void {
    if (this.watchedNodes.has(node)) return;
    this.watchedNodes.add(node);
    const key = nodeKey(node.options);
    // Connected at once rather than by the first command: with the offline queue off, a command
    // sent while a node's first connection is being made is refused ("Connection is closed."), and
    // two replies bound for one new node in the same instant would lose the second. Only once the
    // Cluster is ready (the nodes known before are connected on 'ready'): connecting a seed node
    // while the Cluster still discovers the topology leaves it closed for good when the seed turns
    // out to be a replica.
    if (node.status === 'wait' && publisher.status === 'ready') node.connect().catch(() => undefined);
    node.on('ready', () => this.downUntil.delete(key));
    node.on('error', () => this.downUntil.set(key, Date.now() + NODE_DOWN_PAUSE_MS));
    node.on('close', () => {
      const inFlight = this.commandsInFlight.get(key);
      if (inFlight === undefined) return;
      for (const cut of inFlight.values()) cut(new ConnectionLostError('the connection closed while an SPUBLISH or PUBSUB SHARDNUMSUB was in flight; it is not sent again'));
    });
  }

  private commandsInFlightOn(node: string): Slots<(error: Error) => void> {
    let slots = this.commandsInFlight.get(node);
    if (slots === undefined) {
      slots = new Slots();
      this.commandsInFlight.set(node, slots);
    }
    return slots;
  }

  // Channels published to are not cached: a server replies to the inbox of every caller it ever met.
  private slotOf(channel: string): number {
    return this.slots.get(channel) ?? keySlot(channel);
  }

  /** The master that owns `channel`'s slot in the `Cluster`'s current map. */
  private ownerOf(channel: string): string | undefined {
    return this.publisher?.slots[this.slotOf(channel)]?.[0];
  }

  private shard(node: string): ShardSubscriber {
    let shard = this.shards.get(node);
    if (shard === undefined) {
      const connection = this.options.connections.node(node, `${this.options.connectionName}:sub`, {
        // No INFO ready check (see open()).
        ...(this.options.connections.readyCheckChosen ? {} : { enableReadyCheck: false }),
        autoResendUnfulfilledCommands: false,
        // The ShardSubscriber re-subscribes itself, per slot, and confirms it.
        autoResubscribe: false,
        enableOfflineQueue: true,
        retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
      });
      shard = new ShardSubscriber(node, connection, (channel) => this.slotOf(channel), {
        // A channel's messages come from one node at a time (the owner of its slot when published),
        // so a message still arriving from the node a channel just moved away from is no duplicate.
        message: (channel, message) => this.emit('message', channel, message),
        confirmed: () => this.refreshStatus(),
        lost: (subscribed) => this.onShardLost(node, subscribed),
        error: (error) => {
          if (!this.state.closed && this.listenerCount('error') > 0) this.emit('error', new Error(`${node} (subscriber): ${error.message}`, { cause: error }));
        },
      });
      this.shards.set(node, shard);
      shard.start();
    }
    return shard;
  }

  /**
   * A subscriber connection lost what it held (it closed, or Redis moved a slot away): if that held
   * confirmed subscriptions, what was published to them meanwhile is lost. The slot map is asked
   * again at once: a failover or a migration is the likely cause.
   */
  private onShardLost(node: string, hadConfirmed: boolean): void {
    if (this.state.closed) return;
    const holdsEstablished = [...this.placement].some(([channel, at]) => at === node && this.established.has(channel));
    if (hadConfirmed && holdsEstablished) this.emit('subscriberLost');
    this.refreshStatus();
    this.publisher?.refreshSlotsCache();
  }

  /**
   * Moves every channel to the master that owns its slot now, and re-subscribes a connection that
   * is up but lost its subscriptions (Redis dropped them when a slot moved away).
   */
  private place(): void {
    for (const shard of this.shards.values()) if (!shard.confirmed && !shard.syncing && shard.connection.status === 'ready') shard.resync();
    const moves = new Map<string, string[]>();
    for (const [channel, at] of this.placement) {
      const owner = this.ownerOf(channel);
      if (owner === undefined || owner === at) continue;
      this.placement.set(channel, owner);
      const list = moves.get(at) ?? [];
      list.push(channel);
      moves.set(at, list);
    }
    if (moves.size === 0) return;
    let lost = false;
    const destinations = new Set<string>();
    for (const [from, channels] of moves) {
      const old = this.shards.get(from);
      if (old?.confirmed && channels.some((channel) => this.established.has(channel))) lost = true;
      void old?.remove(channels);
      this.dropIfEmpty(from);
      for (const channel of channels) destinations.add(this.placement.get(channel)!);
    }
    for (const node of destinations) {
      const channels = [...this.placement].filter(([, at]) => at === node).map(([channel]) => channel);
      this.shard(node).resync(channels);
    }
    if (lost && this.state.current === 'connected') this.emit('subscriberLost');
    this.refreshStatus();
  }

  private dropIfEmpty(node: string): void {
    const shard = this.shards.get(node);
    if (shard === undefined || shard.channels.size > 0) return;
    this.shards.delete(node);
    void shard.close();
  }

  private requireReady(action: string): void {
    if (this.state.closed || this.publisher?.status !== 'ready') throw new ConnectionLostError(`cannot ${action} while the connection is ${this.state.current}`);
  }

  private refreshStatus(): void {
    if (this.publisher === undefined) return;
    const status = this.publisher.status;
    const subscriptionsHeld = [...this.shards.values()].every((shard) => shard.confirmed || ![...shard.channels].some((channel) => this.established.has(channel)));
    this.state.refresh(status === 'ready' && subscriptionsHeld, status === 'end');
  }
}
