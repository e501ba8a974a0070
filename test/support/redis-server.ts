import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { rawRedis } from './raw-redis.js';

/** A real redis-server for tests: started on a free loopback port, or `REDIS_URL` when set. */
export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Whether this process started the server (and so may kill and restart it). */
  readonly owned: boolean;
  /** SIGKILLs the server (owned only). */
  kill(): Promise<void>;
  /** SIGSTOPs (freezes) or SIGCONTs (thaws) the server (owned only): connections stay open, nothing is answered. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void;
  /** Starts it again on the same port (owned only). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Arguments for a server a test SIGKILLs and expects to keep what it acknowledged: with the default
 * `appendfsync everysec`, a Redis whose fsync lags (a busy disk) postpones writing its AOF by up to
 * 2 s while it keeps answering, so a kill can drop acknowledged writes (see docs/reliability.md).
 */
export const DURABLE_AOF = ['--appendonly', 'yes', '--appendfsync', 'always'];

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * `REDIS_URL` replaces the server only where one plain server will do: a cluster node or a
 * Sentinel-managed server (`allowExternal: false`) is always started here.
 */
export async function startRedis(extraArgs: string[] = [], { allowExternal = true }: { allowExternal?: boolean } = {}): Promise<TestRedis> {
  const external = allowExternal ? process.env.REDIS_URL : undefined;
  if (external) {
    const port = Number(new URL(external).port || 6379);
    const noop = async (): Promise<void> => undefined;
    return { url: external, port, owned: false, kill: noop, restart: noop, stop: noop, signal: () => undefined };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rb-redis-'));
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no', ...extraArgs],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const spawnError = new Promise<never>((_, reject) =>
      child!.once('error', (error) => reject(new Error(`Could not start redis-server (${error.message}). Install it: apt-get install redis-server`))),
    );
    await Promise.race([waitForPort(port, 10_000).catch((error: Error) => Promise.reject(new Error(`${error.message}\n${stderr}`))), spawnError]);
  };
  await launch();
  const stopChild = async (signal: NodeJS.Signals): Promise<void> => {
    const current = child;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      current.once('exit', () => resolve());
      current.kill(signal);
    });
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    owned: true,
    kill: () => stopChild('SIGKILL'),
    signal: (signal) => void child?.kill(signal),
    restart: launch,
    stop: async () => {
      await stopChild('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * One redis-server for a whole test file and a plain connection to it: started before its first
 * test (`started` is given both), disconnected and stopped after its last.
 */
export function useRedisServer(started: (redis: TestRedis, raw: Redis) => void, extraArgs: string[] = []): void {
  let redis: TestRedis | undefined;
  let raw: Redis | undefined;
  beforeAll(async () => {
    redis = await startRedis(extraArgs);
    raw = rawRedis(redis.url);
    started(redis, raw);
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.stop();
  });
}
