import { ConnectionLostError, DurableConsumer, resolveBufferOptions, resolveDurableHandlerOptions, type DurableHandlerOptions, type DurableOptions, type DurableRun } from 'nestjs-redis-buffer';
import { sleep } from './raw-redis.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reportFigures } from './captured-logs.js';

export const DURABLE_APP = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'dist', 'durable-app.js');

/** A logger that keeps what it is told, for assertions, and prints nothing. */
export class MemoryLogger {
  readonly lines: string[] = [];
  log(message: string): void {
    this.lines.push(`log ${message}`);
  }
  warn(message: string): void {
    this.lines.push(`warn ${message}`);
  }
  error(message: string): void {
    this.lines.push(`error ${message}`);
  }
}

export interface ConsumerSpec extends DurableHandlerOptions {
  readonly pattern: string;
  readonly run: DurableRun;
}

/** A core DurableConsumer (no Nest) in this process, started. */
export async function startConsumer(
  redisUrl: string,
  namespace: string,
  instanceId: string,
  specs: readonly ConsumerSpec[],
  durable: DurableOptions = {},
  extra: { shutdownTimeout?: number; signingKey?: string | string[]; maxPayloadBytes?: number } = {},
): Promise<{ consumer: DurableConsumer; logger: MemoryLogger }> {
  const options = resolveBufferOptions({ redis: redisUrl, namespace, instanceId, shutdownTimeout: extra.shutdownTimeout ?? 2000, durable, signingKey: extra.signingKey, maxPayloadBytes: extra.maxPayloadBytes });
  const logger = new MemoryLogger();
  const consumer = new DurableConsumer(
    options,
    specs.map(({ pattern, run, ...handler }) => ({ pattern, run, options: resolveDurableHandlerOptions(options.durable, handler) })),
    logger,
  );
  await consumer.start();
  return { consumer, logger };
}

/** Polls until `check` returns true, or fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** One line of counts that docs/reliability.md quotes: `DURABLE <name> <json>` (TEST_LOGS=1 or TEST_FIGURES, see reportFigures). */
export function report(name: string, values: Record<string, unknown>): void {
  reportFigures('DURABLE', name, values);
}

/** The records a durable-app instance wrote to `<namespace>:test:<list>`. */
export async function records<T = Record<string, unknown>>(redis: import('ioredis').Redis, namespace: string, list: string): Promise<T[]> {
  return ((await redis.lrange(`${namespace}:test:${list}`, 0, -1)) as string[]).map((line) => JSON.parse(line) as T);
}

/**
 * Publishes until Redis accepts it, as a producer that must not lose an entry would (the same
 * idempotency key makes a retry after an unknown outcome safe); resolves with how many attempts
 * failed with `ConnectionLostError` (any other error is thrown).
 */
export async function publishUntilAccepted(publish: () => Promise<unknown>): Promise<number> {
  for (let failures = 0; ; failures++) {
    try {
      await publish();
      return failures;
    } catch (error) {
      if (!(error instanceof ConnectionLostError)) throw error;
      await sleep(100);
    }
  }
}
