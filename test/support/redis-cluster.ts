import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, startRedis, type TestRedis } from './redis-server.js';

const run = promisify(execFile);

/** A real Redis Cluster for tests, on free loopback ports, joined with `redis-cli --cluster create`. */
export interface TestCluster {
  /** Every node, masters first as created (replicas follow). */
  readonly nodes: readonly TestRedis[];
  /** Startup nodes as ioredis and the library take them. */
  readonly startupNodes: ReadonlyArray<{ host: string; port: number }>;
  /** The port of the master that owns `slot` now (asked of a live node). */
  masterOf(slot: number): Promise<number>;
  /** Ports of the current masters. */
  masters(): Promise<number[]>;
  /** A node by port. */
  node(port: number): TestRedis;
  /** Runs one command on the node at `port`. */
  exec(port: number, ...args: Array<string | number>): Promise<unknown>;
  /** The node id of the node at `port`. */
  nodeId(port: number): Promise<string>;
  /** The hash slot of a key or channel, as a live node computes it. */
  slotOf(key: string): Promise<number>;
  /** The port of a replica of the master at `port`. */
  replicaOf(port: number, timeoutMs?: number): Promise<number>;
  /** Resolves once every live node reports `cluster_state:ok` and agrees on the masters. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterSpec {
  readonly masters?: number;
  readonly replicasPerMaster?: number;
  /** `cluster-node-timeout` in ms: how long a node may be unreachable before a failover starts. */
  readonly nodeTimeout?: number;
}

export async function startCluster({ masters = 3, replicasPerMaster = 0, nodeTimeout = 5000 }: ClusterSpec = {}): Promise<TestCluster> {
  const count = masters * (1 + replicasPerMaster);
  const nodes: TestRedis[] = [];
  try {
    for (let i = 0; i < count; i++) {
      // The cluster bus port would default to port + 10000, which can fall outside the port range.
      const busPort = await freePort();
      nodes.push(
        // repl-diskless-sync-delay 0: a replica syncs at once instead of 5 s later; until it has, it
        // could not take over from its master.
        await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(nodeTimeout), '--cluster-port', String(busPort), '--repl-diskless-sync-delay', '0'], {
          allowExternal: false,
        }),
      );
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'], { timeout: 30_000 });
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw error;
  }
  const alive = new Set(nodes);
  const admin = async <T>(fn: (redis: Redis) => Promise<T>): Promise<T> => {
    let last: unknown;
    for (const node of nodes) {
      const redis = new Redis({ port: node.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500 });
      try {
        await redis.connect();
        return await fn(redis);
      } catch (error) {
        last = error;
      } finally {
        redis.disconnect();
      }
    }
    throw last instanceof Error ? last : new Error('no cluster node answered');
  };
  /** Every live replica has finished its sync with its master (it could take over). */
  const replicasInSync = async (): Promise<boolean> => {
    for (const node of alive) {
      const redis = new Redis({ port: node.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500 });
      try {
        await redis.connect();
        const info = await redis.info('replication');
        if (/role:slave/.test(info) && !/master_link_status:up/.test(info)) return false;
      } catch {
        return false;
      } finally {
        redis.disconnect();
      }
    }
    return true;
  };
  const slots = (): Promise<Array<[number, number, [string, number, ...unknown[]], ...unknown[]]>> => admin((redis) => redis.cluster('SLOTS') as never);
  const cluster: TestCluster = {
    nodes,
    startupNodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    async masterOf(slot) {
      const range = (await slots()).find(([from, to]) => slot >= from && slot <= to);
      if (range === undefined) throw new Error(`no node owns slot ${slot}`);
      return Number(range[2][1]);
    },
    async masters() {
      return [...new Set((await slots()).map((range) => Number(range[2][1])))].sort((a, b) => a - b);
    },
    async exec(port, ...args) {
      const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1000 });
      try {
        await redis.connect();
        return await redis.call(String(args[0]), ...args.slice(1));
      } finally {
        redis.disconnect();
      }
    },
    async slotOf(key) {
      return Number(await admin((redis) => redis.cluster('KEYSLOT', key)));
    },
    async nodeId(port) {
      return String(await cluster.exec(port, 'CLUSTER', 'MYID'));
    },
    async replicaOf(port, timeoutMs = 15_000) {
      const id = await cluster.nodeId(port);
      // A node restarted after a failover takes a moment to learn that it is now a replica.
      for (const deadline = Date.now() + timeoutMs; ; await new Promise((resolve) => setTimeout(resolve, 100))) {
        const lines = String(await cluster.exec(port, 'CLUSTER', 'NODES')).split('\n');
        // <id> <ip:port@cport> <flags> <master id> …
        const replica = lines.map((line) => line.split(' ')).find((fields) => fields[3] === id && fields[2]?.includes('slave') && !fields[2].includes('fail'));
        if (replica !== undefined) return Number(replica[1]!.split('@')[0]!.split(':')[1]);
        if (Date.now() > deadline) throw new Error(`no live replica of the master on port ${port} after ${timeoutMs} ms:\n${lines.join('\n')}`);
      }
    },
    node(port) {
      const found = nodes.find((n) => n.port === port);
      if (found === undefined) throw new Error(`no node on port ${port}`);
      return found;
    },
    async waitHealthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(
          [...alive].map(async (node) => {
            const redis = new Redis({ port: node.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500 });
            try {
              await redis.connect();
              const info = await redis.cluster('INFO');
              if (!/cluster_state:ok/.test(info)) return 'fail';
              const ranges = (await redis.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
              // Masters only: nodes may list a master's replicas in different orders.
              return ranges.map(([from, to, [, port]]) => `${from}-${to}:${port}`).sort().join(',');
            } catch {
              return 'down';
            } finally {
              redis.disconnect();
            }
          }),
        );
        const up = states.filter((s) => s !== 'down');
        if (up.length > 0 && up.every((s) => s !== 'fail' && s === up[0]) && (await replicasInSync())) return;
        if (Date.now() > deadline) throw new Error(`cluster not healthy after ${timeoutMs} ms: ${states.map((s) => s.slice(0, 40)).join(' | ')}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  // A node killed by a test is left out of health checks until the test restarts it.
  for (const node of nodes) {
    const kill = node.kill.bind(node);
    const restart = node.restart.bind(node);
    Object.assign(node, {
      kill: async () => {
        alive.delete(node);
        await kill();
      },
      restart: async () => {
        await restart();
        alive.add(node);
      },
    });
  }
  await cluster.waitHealthy();
  return cluster;
}
