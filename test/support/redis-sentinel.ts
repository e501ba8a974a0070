import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stopChild } from './instances.js';
import { freePort, startRedis, waitForPort, type TestRedis } from './redis-server.js';

export const MASTER_NAME = 'mymaster';

/** A master, a replica and three sentinels watching them, on free loopback ports. */
export interface TestSentinelGroup {
  readonly servers: readonly TestRedis[];
  readonly sentinels: ReadonlyArray<{ host: string; port: number }>;
  /** What `BufferClient` and `RedisBufferTransport` take: ioredis's Sentinel options. */
  readonly connection: { redis: { sentinels: Array<{ host: string; port: number }>; name: string } };
  /** The port of the current master, as the sentinels report it. */
  masterPort(): Promise<number>;
  /** Resolves once the sentinels agree on a master that is up, know its replica, and the replica has synced. */
  waitStable(timeoutMs?: number): Promise<void>;
  server(port: number): TestRedis;
  sentinelCommand(...args: string[]): Promise<unknown>;
  /** SIGSTOPs (`paused: true`) or SIGCONTs the sentinel at `index`: it accepts connections and answers nothing meanwhile. */
  pauseSentinel(index: number, paused: boolean): void;
  stop(): Promise<void>;
}

/**
 * `downAfterMs`: how long the sentinels wait before they take a silent master for down
 * (`down-after-milliseconds`).
 */
export async function startSentinelGroup({ downAfterMs = 1000 }: { downAfterMs?: number } = {}): Promise<TestSentinelGroup> {
  const master = await startRedis(['--repl-diskless-sync-delay', '0'], { allowExternal: false });
  const replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port), '--repl-diskless-sync-delay', '0'], { allowExternal: false });
  const servers = [master, replica];
  const dir = mkdtempSync(join(tmpdir(), 'rb-sentinel-'));
  const children: ChildProcess[] = [];
  const sentinels: Array<{ host: string; port: number }> = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const file = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      file,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        `dir ${dir}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} ${downAfterMs}`,
        `sentinel failover-timeout ${MASTER_NAME} 10000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    );
    const child = spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' });
    children.push(child);
    await waitForPort(port, 10_000);
    sentinels.push({ host: '127.0.0.1', port });
  }
  const sentinelCommand = async (...args: string[]): Promise<unknown> => {
    let last: unknown;
    for (const { port } of sentinels) {
      const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500, commandTimeout: 1000 });
      redis.on('error', () => undefined);
      try {
        await redis.connect();
        return await redis.call('SENTINEL', ...args);
      } catch (error) {
        last = error;
      } finally {
        redis.disconnect();
      }
    }
    throw last instanceof Error ? last : new Error('no sentinel answered');
  };
  const group: TestSentinelGroup = {
    servers,
    sentinels,
    connection: { redis: { sentinels: sentinels.map((s) => ({ ...s })), name: MASTER_NAME } },
    async masterPort() {
      const [, port] = (await sentinelCommand('get-master-addr-by-name', MASTER_NAME)) as [string, string];
      return Number(port);
    },
    server(port) {
      const found = servers.find((s) => s.port === port);
      if (found === undefined) throw new Error(`no server on port ${port}`);
      return found;
    },
    sentinelCommand,
    pauseSentinel(index, paused) {
      children[index]!.kill(paused ? 'SIGSTOP' : 'SIGCONT');
    },
    async waitStable(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      for (;;) {
        try {
          const answers = await Promise.all(
            sentinels.map(async ({ port }) => {
              const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500 });
              try {
                await redis.connect();
                const [, masterPort] = (await redis.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as [string, string];
                const replicas = (await redis.call('SENTINEL', 'replicas', MASTER_NAME)) as string[][];
                const up = replicas.filter((fields) => !String(fields[fields.indexOf('flags') + 1]).includes('down'));
                const others = (await redis.call('SENTINEL', 'sentinels', MASTER_NAME)) as unknown[];
                return `${masterPort}/${up.length}/${others.length}`;
              } finally {
                redis.disconnect();
              }
            }),
          );
          last = answers.join(' ');
          const masterPort = Number(answers[0]!.split('/')[0]);
          if (answers.every((a) => a === answers[0]) && answers[0]!.endsWith('/1/2')) {
            const master = new Redis({ port: masterPort, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0 });
            const info = await master.info('replication').finally(() => master.disconnect());
            if (/role:master/.test(info) && /slave0:.*state=online/.test(info)) return;
          }
        } catch (error) {
          last = String(error);
        }
        if (Date.now() > deadline) throw new Error(`sentinels not stable after ${timeoutMs} ms: ${last}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async stop() {
      for (const child of children) child.kill('SIGCONT');
      await Promise.all(children.map((child) => stopChild(child, 'SIGTERM', 5000)));
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await group.waitStable();
  } catch (error) {
    await group.stop();
    throw error;
  }
  return group;
}
