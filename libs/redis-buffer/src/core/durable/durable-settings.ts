import type { Redis } from 'ioredis';
import type { BufferLogger } from '../logger.js';
import type { ResolvedDurableOptions } from './durable-options.js';

/**
 * Durable options that every party of a stream must agree on: a consumer with a shorter
 * `claimIdle` claims what the others are still running; a publisher and consumers with different
 * `idempotencyWindow`s deduplicate over different spans; different retention trims differently.
 * The module options and the transport options are separate objects in a Nest app, so they can
 * drift apart: each consumer records its values in the stream's settings hash at start, and every
 * party compares its own against it and warns naming each difference.
 */
const SHARED = ['claimIdle', 'idempotencyWindow', 'maxLength', 'maxAge', 'approximateTrim'] as const;
/** The publisher does not claim: its `claimIdle` is not compared. */
const PUBLISHER_SHARED = ['idempotencyWindow', 'maxLength', 'maxAge', 'approximateTrim'] as const;

type SharedName = (typeof SHARED)[number];

function valueOf(durable: ResolvedDurableOptions, name: SharedName): string {
  const value = durable[name];
  return value === undefined ? 'off' : String(value);
}

/** Differences between these options and the ones recorded for the stream, one sentence each. */
export function settingsMismatches(durable: ResolvedDurableOptions, recorded: Readonly<Record<string, string>>, side: 'consumer' | 'publisher'): string[] {
  const names = side === 'consumer' ? SHARED : PUBLISHER_SHARED;
  const by = recorded.by === undefined ? '' : ` (recorded by instance "${recorded.by}")`;
  return names.filter((name) => recorded[name] !== undefined && recorded[name] !== valueOf(durable, name)).map((name) => `durable.${name} is ${valueOf(durable, name)} here but ${recorded[name]} in Redis${by}`);
}

/**
 * Compares this party's shared options with the stream's settings hash and warns on each
 * difference; a consumer then records its own (the latest consumer's values are the reference).
 */
export async function checkSettings(redis: Redis, settingsKey: string, pattern: string, durable: ResolvedDurableOptions, instanceId: string, logger: BufferLogger | undefined, side: 'consumer' | 'publisher'): Promise<void> {
  const recorded = await redis.hgetall(settingsKey);
  const mismatches = settingsMismatches(durable, recorded, side);
  if (mismatches.length > 0) {
    logger?.warn(`Durable options of "${pattern}" differ between instances: ${mismatches.join('; ')}. Give the publisher (BufferModule) and every consumer (RedisBufferTransport) the same "durable" options.`);
  }
  if (side === 'consumer') await redis.hset(settingsKey, ...SHARED.flatMap((name) => [name, valueOf(durable, name)]), 'by', instanceId);
}
