// Shared by the orchestrator, the caller processes and the responder processes.
import type { Observable } from 'rxjs';
import type { KindCounts } from './publish-tally.js';
import type { Done } from './systems/types.js';

/** The systems under comparison. */
export type SystemName = 'lib' | 'naive' | 'coalesced' | 'floornest' | 'nats' | 'nest' | 'base' | 'otel' | 'topic';

export const SYSTEM_LABELS: Record<SystemName, string> = {
  lib: 'nestjs-redis-buffer (send)',
  naive: 'naive floor (ioredis)',
  coalesced: 'coalesced floor (ioredis)',
  floornest: 'coalesced floor + Nest handler',
  nats: 'NATS requestMany',
  nest: 'Nest Transport.REDIS',
  base: 'library baseline (--baseline build)',
  otel: 'nestjs-redis-buffer + OpenTelemetry SDK',
  topic: 'nestjs-redis-buffer, wildcard binding (bench.*)',
};

/** The request every system sends and the reply every responder returns: the motivating "who owns this resource?" case. */
export const REQUEST_DATA = { resource: 'res-1042', fields: ['owner', 'version'] };
export const REPLY_DATA = { found: false, owner: null, version: 0 };

export const ECHO_PATTERN = 'bench.echo';
/**
 * System "topic": its responders bind the echo handler as this wildcard, and callers ask the topic
 * `ECHO_PATTERN`: each request is published on its own channel (nobody there) and on this binding's.
 */
export const TOPIC_ECHO_BINDING = 'bench.*';
/** Replies after the number of ms in the payload: used to hold requests open. */
export const HOLD_PATTERN = 'bench.hold';

export interface Endpoints {
  readonly redisUrl: string;
  readonly redisPort: number;
  readonly natsUrl: string | undefined;
  /** Channel / subject prefix, so that systems never see each other's traffic. */
  readonly namespace: string;
  /** Whether callers count PUBLISHes by kind (`--no-tally` turns it off). */
  readonly tally?: boolean;
  /** `--baseline=PATH`: another build of the library (its dist/index.js), run as system "base" for before/after. */
  readonly baseline?: string;
}

/** Orchestrator -> caller commands. */
export type CallerCommand =
  | {
      readonly op: 'latency';
      readonly n: number;
      readonly durationMs: number;
      readonly maxCount: number;
      /** Requests for this long first, not recorded (the system may have been idle while others ran). */
      readonly warmupMs?: number;
      /** Adds to the samples of the previous latency command instead of starting anew (one slice of several). */
      readonly continued?: boolean;
    }
  | { readonly op: 'load'; readonly n: number; readonly concurrency: number; readonly warmupMs: number; readonly durationMs: number; readonly responderPids?: readonly number[] }
  | { readonly op: 'memory'; readonly n: number; readonly warmup: number; readonly total: number; readonly checkpoints: number; readonly concurrency: number }
  | { readonly op: 'inflight'; readonly n: number; readonly count: number; readonly holdMs: number }
  | { readonly op: 'burst'; readonly n: number; readonly count: number; readonly timeoutMs: number }
  | { readonly op: 'exit' };

export interface LatencyResult {
  readonly count: number;
  readonly errors: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
}

export interface LoadResult extends LatencyResult {
  readonly rps: number;
  /** CPU time (user + system) of the caller process per request completed in the window, in µs. */
  readonly callerCpuUsPerRequest?: number;
  /** CPU time of the responder processes per request completed in the window, in µs (all N instances together). */
  readonly responderCpuUsPerRequest?: number;
  /** CPU time of redis-server per request completed in the window, in µs (INFO cpu). */
  readonly redisCpuUsPerRequest?: number;
  /** PUBLISH commands Redis ran per request completed in the window (INFO commandstats): how well messages were coalesced. */
  readonly publishesPerRequest?: number;
  /** Messages published in the system's namespace by kind over the window, as the caller counts them (`countPublishes`). */
  readonly publishesByKind?: KindCounts;
}

export interface MemorySample {
  readonly requests: number;
  readonly heapUsed: number;
  readonly rss: number;
}

export interface MemoryResult {
  readonly samples: MemorySample[];
  readonly errors: number;
}

export interface InflightResult {
  readonly count: number;
  readonly baseHeap: number;
  readonly heldHeap: number;
  readonly bytesPerRequest: number;
  readonly answered: number;
  readonly errors: number;
}

export interface BurstResult {
  readonly count: number;
  readonly answered: number;
  readonly complete: number;
  readonly lost: number;
  readonly wallMs: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Percentile of an ascending sorted array (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
}

export function summarize(latenciesMs: Float64Array, count: number, errors: number): LatencyResult {
  const sorted = latenciesMs.subarray(0, count).sort();
  let sum = 0;
  for (let index = 0; index < count; index++) sum += sorted[index]!;
  return { count, errors, p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: count === 0 ? NaN : sum / count };
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Subscribes to a `send()` stream, counting its reply values, and calls `done` once when it ends. */
export function countReplies(source: Observable<unknown>, done: Done): void {
  let replies = 0;
  source.subscribe({
    next: () => void replies++,
    error: (error: unknown) => done(error ?? new Error('error reply'), replies),
    complete: () => done(undefined, replies),
  });
}

/**
 * The in-process cost programs' `--only=<system>` (one of `systems`, measured alone, for a profile or
 * callgrind): whether a system is measured. Throws on an unknown name, or on `baseline` without
 * `--baseline=<path>`.
 */
export function onlyFilter(argv: readonly string[], systems: readonly string[], baselinePath: string | undefined): { only: string | undefined; wanted: (name: string) => boolean } {
  const only = argv.find((arg) => arg.startsWith('--only='))?.slice(7);
  if (only !== undefined && !systems.includes(only)) throw new Error(`--only: ${systems.join(', ')}, not "${only}"`);
  if (only === 'baseline' && baselinePath === undefined) throw new Error('--only=baseline needs --baseline=<path>');
  return { only, wanted: (name) => only === undefined || only === name };
}
