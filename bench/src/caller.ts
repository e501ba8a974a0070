// A caller process for one system (argv: system): runs the orchestrator's measurement commands over IPC.
import {
  ECHO_PATTERN,
  HOLD_PATTERN,
  REQUEST_DATA,
  nowMs,
  percentile,
  summarize,
  type BurstResult,
  type CallerCommand,
  type Endpoints,
  type InflightResult,
  type LatencyResult,
  type LoadResult,
  type MemoryResult,
  type MemorySample,
  type SystemName,
} from './common.js';
import { Redis } from 'ioredis';
import { cpuMsOf } from './proc-cpu.js';
import { createCaller } from './systems/index.js';
import type { CallerSystem } from './systems/types.js';
import { emptyKindCounts, subtractKindCounts, type KindCounts } from './publish-tally.js';

const system = process.argv[2] as SystemName;
const endpoints = JSON.parse(process.env.BENCH_ENDPOINTS!) as Endpoints;
const latencies = new Float64Array(4_000_000);
// PUBLISHes by kind on this caller's connections (see publish-tally.ts), when counted.
let publishCounts: KindCounts | undefined;

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) return;
  collect();
  collect();
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// The samples of the latency measurement under way, which may be taken in several slices.
let latencyCount = 0;
let latencyErrors = 0;

/**
 * One request at a time: `warmupMs` unrecorded, then `durationMs` or until `maxCount` requests
 * in all. `continued` adds to the previous command's samples (a measurement taken in slices).
 */
function latency(caller: CallerSystem, n: number, durationMs: number, maxCount: number, warmupMs = 0, continued = false): Promise<LatencyResult> {
  if (!continued) {
    latencyCount = 0;
    latencyErrors = 0;
  }
  return new Promise((resolve) => {
    const warmEnd = nowMs() + warmupMs;
    const end = warmEnd + durationMs;
    const next = (): void => {
      const now = nowMs();
      if (latencyCount >= maxCount || now >= end || latencyCount >= latencies.length) {
        resolve(summarize(latencies, latencyCount, latencyErrors));
        return;
      }
      const recorded = now >= warmEnd;
      caller.request(n, ECHO_PATTERN, REQUEST_DATA, (error, replies) => {
        if (error !== undefined || replies !== n) latencyErrors++;
        if (recorded) latencies[latencyCount++] = nowMs() - now;
        next();
      });
    };
    next();
  });
}

/** PUBLISH (and SPUBLISH) commands Redis has run, and its CPU time in ms, from INFO. */
interface RedisCounters {
  readonly publishes: number;
  readonly cpuMs: number;
}

let statsConnection: Redis | undefined;

async function redisCounters(): Promise<RedisCounters | undefined> {
  try {
    statsConnection ??= new Redis(endpoints.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 });
    const info = await statsConnection.info('everything');
    const calls = (command: string): number => Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    const seconds = (field: string): number => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
    return { publishes: calls('publish') + calls('spublish'), cpuMs: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000 };
  } catch {
    return undefined;
  }
}

function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/**
 * `concurrency` requests in flight (closed loop): throughput and latency after a warm-up, and the
 * CPU time per request of this process and of the responders (`responderPids`) over the window.
 */
function load(caller: CallerSystem, n: number, concurrency: number, warmupMs: number, durationMs: number, responderPids: readonly number[] = []): Promise<LoadResult> {
  return new Promise((resolve) => {
    const start = nowMs();
    const windowStart = start + warmupMs;
    const windowEnd = windowStart + durationMs;
    let cpuAtStart: { own: number; responders: number | undefined } | undefined;
    let kindsAtStart: KindCounts | undefined;
    let kindsAtEnd: KindCounts | undefined;
    let redisAtStart: Promise<RedisCounters | undefined> | undefined;
    const cpuTimer = setTimeout(() => {
      cpuAtStart = { own: ownCpuMs(), responders: cpuMsOf(responderPids) };
      if (publishCounts !== undefined) kindsAtStart = subtractKindCounts(publishCounts, emptyKindCounts());
      redisAtStart = redisCounters();
    }, warmupMs);
    let count = 0;
    let errors = 0;
    let inWindow = 0;
    let outstanding = 0;
    let cpuAtEnd: { own: number; responders: number | undefined } | undefined;
    let redisAtEnd: Promise<RedisCounters | undefined> | undefined;
    const launch = (): void => {
      const started = nowMs();
      outstanding++;
      caller.request(n, ECHO_PATTERN, REQUEST_DATA, (error, replies) => {
        outstanding--;
        const finished = nowMs();
        if (finished >= windowStart && finished < windowEnd) {
          inWindow++;
          if (error !== undefined || replies !== n) errors++;
          if (started >= windowStart && count < latencies.length) latencies[count++] = finished - started;
        }
        if (finished < windowEnd) launch();
        else {
          if (cpuAtEnd === undefined) {
            cpuAtEnd = { own: ownCpuMs(), responders: cpuMsOf(responderPids) };
            if (publishCounts !== undefined) kindsAtEnd = subtractKindCounts(publishCounts, emptyKindCounts());
            redisAtEnd = redisCounters();
          }
          if (outstanding === 0) {
            clearTimeout(cpuTimer);
            const summary = summarize(latencies, count, errors);
            const perRequest = (before: number | undefined, after: number | undefined, scale = 1000): number | undefined =>
              before === undefined || after === undefined || inWindow === 0 ? undefined : ((after - before) * scale) / inWindow;
            const cpu = cpuAtEnd;
            void Promise.all([redisAtStart, redisAtEnd]).then(([redisBefore, redisAfter]) =>
              resolve({
                ...summary,
                rps: inWindow / (durationMs / 1000),
                callerCpuUsPerRequest: perRequest(cpuAtStart?.own, cpu.own),
                responderCpuUsPerRequest: responderPids.length === 0 ? undefined : perRequest(cpuAtStart?.responders, cpu.responders),
                redisCpuUsPerRequest: perRequest(redisBefore?.cpuMs, redisAfter?.cpuMs),
                publishesPerRequest: perRequest(redisBefore?.publishes, redisAfter?.publishes, 1),
                ...(kindsAtStart !== undefined && kindsAtEnd !== undefined ? { publishesByKind: subtractKindCounts(kindsAtEnd, kindsAtStart) } : {}),
              }),
            );
          }
        }
      });
    };
    for (let index = 0; index < concurrency; index++) launch();
  });
}

/** Runs `total` requests at `concurrency` in flight, resolving when all are done; counts errors. */
function run(caller: CallerSystem, n: number, total: number, concurrency: number): Promise<number> {
  return new Promise((resolve) => {
    let started = 0;
    let finished = 0;
    let errors = 0;
    const launch = (): void => {
      started++;
      caller.request(n, ECHO_PATTERN, REQUEST_DATA, (error, replies) => {
        finished++;
        if (error !== undefined || replies !== n) errors++;
        if (started < total) launch();
        else if (finished === total) resolve(errors);
      });
    };
    for (let index = 0; index < Math.min(concurrency, total); index++) launch();
  });
}

function sample(requests: number): MemorySample {
  gc();
  const usage = process.memoryUsage();
  return { requests, heapUsed: usage.heapUsed, rss: usage.rss };
}

async function memory(caller: CallerSystem, n: number, warmup: number, total: number, checkpoints: number, concurrency: number): Promise<MemoryResult> {
  let errors = await run(caller, n, warmup, concurrency);
  await sleep(200);
  const samples: MemorySample[] = [sample(0)];
  const step = Math.ceil(total / checkpoints);
  for (let done = 0; done < total; ) {
    const chunk = Math.min(step, total - done);
    errors += await run(caller, n, chunk, concurrency);
    done += chunk;
    await sleep(100);
    samples.push(sample(done));
  }
  return { samples, errors };
}

async function inflight(caller: CallerSystem, n: number, count: number, holdMs: number): Promise<InflightResult> {
  await sleep(200);
  gc();
  const baseHeap = process.memoryUsage().heapUsed;
  let answered = 0;
  let errors = 0;
  let finished = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((resolve) => (resolveAll = resolve));
  for (let index = 0; index < count; index++) {
    caller.request(n, HOLD_PATTERN, holdMs, (error, replies) => {
      finished++;
      if (error === undefined && replies === n) answered++;
      else errors++;
      if (finished === count) resolveAll();
    });
  }
  // Every request is published and held by the responders (they answer after holdMs).
  await sleep(Math.min(1000, holdMs / 3));
  gc();
  const heldHeap = process.memoryUsage().heapUsed;
  const stillOpen = count - finished;
  await all;
  return { count: stillOpen, baseHeap, heldHeap, bytesPerRequest: (heldHeap - baseHeap) / stillOpen, answered, errors };
}

async function burst(caller: CallerSystem, n: number, count: number, timeoutMs: number): Promise<BurstResult> {
  const times = new Float64Array(count);
  let answered = 0;
  let complete = 0;
  let finished = 0;
  const start = nowMs();
  await new Promise<void>((resolve) => {
    for (let index = 0; index < count; index++) {
      const started = nowMs();
      const done = (error: unknown, replies: number, all: boolean): void => {
        times[finished++] = nowMs() - started;
        if (error === undefined && replies === n) answered++;
        if (error === undefined && replies === n && all) complete++;
        if (finished === count) resolve();
      };
      if (caller.gather !== undefined) caller.gather(n, ECHO_PATTERN, REQUEST_DATA, timeoutMs, done);
      else caller.request(n, ECHO_PATTERN, REQUEST_DATA, (error, replies) => done(error, replies, true));
    }
  });
  const wallMs = nowMs() - start;
  times.sort();
  return { count, answered, complete, lost: count - complete, wallMs, p50: percentile(times, 50), p99: percentile(times, 99), max: times[count - 1]! };
}

async function main(): Promise<void> {
  const caller = await createCaller(system, endpoints);
  await caller.start();
  if (endpoints.tally !== false) publishCounts = caller.countPublishes?.();
  let exiting = false;
  const exit = async (): Promise<void> => {
    if (exiting) return;
    exiting = true;
    setTimeout(() => process.exit(0), 2000).unref();
    await caller.close().catch(() => undefined);
    process.exit(0);
  };
  process.on('disconnect', () => void exit());
  process.on('SIGTERM', () => void exit());
  process.on('SIGINT', () => void exit());
  process.on('message', (command: CallerCommand) => {
    const work = async (): Promise<unknown> => {
      switch (command.op) {
        case 'latency':
          return latency(caller, command.n, command.durationMs, command.maxCount, command.warmupMs, command.continued);
        case 'load':
          return load(caller, command.n, command.concurrency, command.warmupMs, command.durationMs, command.responderPids);
        case 'memory':
          return memory(caller, command.n, command.warmup, command.total, command.checkpoints, command.concurrency);
        case 'inflight':
          return inflight(caller, command.n, command.count, command.holdMs);
        case 'burst':
          return burst(caller, command.n, command.count, command.timeoutMs);
        case 'exit':
          await exit();
          return undefined;
      }
    };
    work().then(
      (result) => process.send?.({ ok: true, result }),
      (error: unknown) => process.send?.({ ok: false, error: String((error as Error)?.stack ?? error) }),
    );
  });
  process.send?.({ ready: true });
}

main().catch((error: unknown) => {
  process.stderr.write(`caller ${system} failed: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
