import type { Cluster, Redis } from 'ioredis';
import { keySlot } from '../bus/key-slot.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import type { ResolvedDurableReplicas } from './durable-options.js';

/** The connection a write is about to be sent on (a Cluster's node connection), and how often it had closed by then. */
export interface WriteTarget {
  readonly node: Redis;
  readonly closes: number;
}

interface NodeState {
  /** 'close' events seen on the connection: a WAIT proves nothing about a write sent on an earlier socket. */
  closes: number;
  /** WAITs not sent yet, one per distinct (min, timeout): publishes joining one share it. */
  readonly queued: Batch[];
  /** A WAIT is blocking the connection: the next one is sent when it answers. */
  waiting: boolean;
}

interface Batch {
  readonly min: number;
  readonly timeout: number;
  readonly waiters: Array<{ resolve: (confirmed: number) => void; reject: (error: unknown) => void }>;
}

/**
 * Confirms that writes reached replicas with Redis's `WAIT`, which blocks the connection it is sent
 * on until the replicas acknowledged every write sent before it *on that connection*, and answers
 * how many did. So it must follow the write on the very connection (the very socket) that sent it:
 * on a Cluster, the connection of the node that took the write, not one the Cluster picks at random.
 *
 * - Before the write, `target` names the connection ioredis will send it on (a Cluster sends a
 *   write to the first node its slot map names for the key's slot) and counts its closes so far.
 * - After it, `confirm` checks that the connection is still the one the slot map names and has not
 *   closed meanwhile (a MOVED redirection, a reconnect, a failover in between: the write went
 *   elsewhere or its socket is gone, and a WAIT now would answer for nothing), then sends WAIT.
 *
 * WAIT blocks its connection, so writes confirmed together share one: publishes whose writes
 * resolved before a WAIT is sent join it (group commit), and at most one WAIT blocks a connection
 * at a time. A publish waits at most for the WAIT in progress and its own, each bounded by `timeout`.
 */
export class ReplicaConfirmations {
  private readonly nodes = new WeakMap<Redis, NodeState>();

  /** The connection a write of `key` is sent on now; undefined when a Cluster's slot map names no node for it. */
  target(connection: Redis | Cluster, key: string): WriteTarget | undefined {
    const node = nodeFor(connection, key);
    return node === undefined ? undefined : { node, closes: this.stateOf(node).closes };
  }

  /**
   * After a write sent on `before` resolved: how many replicas have it, as `WAIT min timeout`
   * answers. Rejects when the write's connection cannot be shown to be the one WAIT is sent on.
   */
  async confirm(connection: Redis | Cluster, key: string, before: WriteTarget | undefined, replicas: ResolvedDurableReplicas): Promise<number> {
    if (before === undefined) throw new ConnectionLostError('the Redis Cluster slot map named no node for the stream, so the node that took the entry is unknown');
    const state = this.stateOf(before.node);
    const moved = (): boolean => nodeFor(connection, key) !== before.node || state.closes !== before.closes;
    if (moved()) throw new ConnectionLostError('the connection the entry was written on closed, or its slot moved, before WAIT could be sent on it');
    const confirmed = await new Promise<number>((resolve, reject) => {
      let batch = state.queued.find((queued) => queued.min === replicas.min && queued.timeout === replicas.timeout);
      if (batch === undefined) {
        batch = { min: replicas.min, timeout: replicas.timeout, waiters: [] };
        state.queued.push(batch);
        // The other writes resolved in this turn of the event loop join the same WAIT.
        setImmediate(() => this.sendNext(before.node, state));
      }
      batch.waiters.push({ resolve, reject });
    });
    // WAIT answered on a socket opened after the write's: it says nothing about the write.
    if (state.closes !== before.closes) throw new ConnectionLostError('the connection the entry was written on closed before WAIT answered');
    return confirmed;
  }

  private sendNext(node: Redis, state: NodeState): void {
    if (state.waiting) return;
    const batch = state.queued.shift();
    if (batch === undefined) return;
    state.waiting = true;
    const settle = (outcome: (waiter: Batch['waiters'][number]) => void): void => {
      state.waiting = false;
      for (const waiter of batch.waiters) outcome(waiter);
      this.sendNext(node, state);
    };
    node.wait(batch.min, batch.timeout).then(
      (confirmed) => settle((waiter) => waiter.resolve(Number(confirmed))),
      (error: unknown) => settle((waiter) => waiter.reject(error)),
    );
  }

  private stateOf(node: Redis): NodeState {
    let state = this.nodes.get(node);
    if (state === undefined) {
      const created: NodeState = { closes: 0, queued: [], waiting: false };
      node.on('close', () => created.closes++);
      this.nodes.set(node, created);
      state = created;
    }
    return state;
  }
}

/** The connection a write of `key` goes to: the connection itself, or on a Cluster the node its slot map names first (the master). */
function nodeFor(connection: Redis | Cluster, key: string): Redis | undefined {
  if (!connection.isCluster) return connection as Redis;
  const cluster = connection as Cluster;
  const nodeKey = cluster.slots[keySlot(key)]?.[0];
  if (nodeKey === undefined) return undefined;
  return cluster.nodes('all').find((node) => `${node.options.host}:${node.options.port}` === nodeKey);
}
