// `npm run bench:instances`: the library as the caller of up to 1,000 responding instances. The
// instances are simulated (sim-instances.ts: the wire protocol on plain ioredis, a few processes
// hosting them all), so the figures are the caller's and Redis's, not those of a thousand Nest apps.
// For each number of instances: the caller's CPU time per reply and gathers/s with 32 gathers in
// flight, p50/p99 of one gather at a time, and whether every gather was exact (every instance's
// reply, completed by 'all'). This process is the caller; it starts its own redis-server.
// How the simulated instances batch what they send (sim-instances.ts): `own`, each instance its own
// PUBLISHes as a library instance does (the caller gets a message per instance, as deployed), and
// `shared`, a process's instances batched together (fewer, larger messages), both within the
// library's batch limits.
// Beside the library, in the same repetitions, a wire floor (wire-floor-caller.ts: plain ioredis on the
// same wire, no validation, deadlines, membership or result) is measured the same way: what it
// takes is Redis's, the simulated instances' and the machine's share, under any caller.
// Flags: --counts=64,250,500,1000  --batching=own,shared  --reps=K (default 3)  --processes=P (default 4)  --seconds=S (default 3)
import { cpus, loadavg } from 'node:os';
import { BufferClient } from 'nestjs-redis-buffer';
import type { Redis } from 'ioredis';
import { ECHO_PATTERN, median, nowMs, percentile, REQUEST_DATA } from './common.js';
import { killAll, startRedis, Worker } from './infra.js';
import { countPublishes, emptyKindCounts, subtractKindCounts, type KindCounts, TallyCost } from './publish-tally.js';
import { WireFloorCaller } from './wire-floor-caller.js';

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
const counts = (flag('counts') ?? '64,250,500,1000').split(',').map(Number);
const batchings = (flag('batching') ?? 'own,shared').split(',') as Array<'own' | 'shared'>;
for (const batching of batchings) if (batching !== 'own' && batching !== 'shared') throw new Error(`--batching: "own" or "shared", not "${String(batching)}"`);
const reps = Number(flag('reps') ?? 3);
const processes = Number(flag('processes') ?? 4);
const seconds = Number(flag('seconds') ?? 3);
const IN_FLIGHT = 32;

function log(message: string): void {
  process.stderr.write(`[instances ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Rep {
  sequentialP50: number;
  sequentialP99: number;
  sequentialCount: number;
  gathersPerSecond: number;
  callerUsPerReply: number;
  /** The benchmark's own count of PUBLISHes by kind, in the caller: measured and left out of `callerUsPerReply`. */
  tallyUsPerReply: number;
  inexact: number;
  kinds: KindCounts;
}

/** The wire floor's figures in one repetition. */
interface FloorRep {
  sequentialP50: number;
  gathersPerSecond: number;
  callerUsPerReply: number;
}

/** The wire floor, measured as `measure` measures the library. */
async function measureFloor(floor: WireFloorCaller, expected: number): Promise<FloorRep> {
  const run = await windows(async () => {
    await floor.gather(expected);
    return true;
  });
  return { sequentialP50: percentile(run.times, 50), gathersPerSecond: run.gathersPerSecond, callerUsPerReply: run.cpuUs / (run.gathers * expected) };
}

/**
 * One gather at a time for a window (the round trips, sorted), then IN_FLIGHT at a time for another
 * (the gathers, their rate and the CPU time spent). `gather` resolves whether it was exact;
 * `beforeLoad` runs between the two windows.
 */
async function windows(gather: () => Promise<boolean>, beforeLoad: () => void = () => undefined): Promise<{ times: number[]; inexact: number; gathers: number; gathersPerSecond: number; cpuUs: number }> {
  const times: number[] = [];
  let inexact = 0;
  const sequentialEnd = nowMs() + seconds * 1000;
  while (nowMs() < sequentialEnd && times.length < 5000) {
    const started = nowMs();
    if (!(await gather())) inexact++;
    times.push(nowMs() - started);
  }
  times.sort((a, b) => a - b);
  beforeLoad();
  const cpuBefore = process.cpuUsage();
  const started = nowMs();
  const end = started + seconds * 1000;
  let gathers = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (nowMs() < end) {
        if (!(await gather())) inexact++;
        gathers++;
      }
    }),
  );
  const elapsedMs = nowMs() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return { times, inexact, gathers, gathersPerSecond: (gathers * 1000) / elapsedMs, cpuUs: cpu.user + cpu.system };
}

/** One gather; resolves whether it was exact (all `expected` replies, completed by 'all'). */
async function gatherOnce(client: BufferClient, expected: number): Promise<boolean> {
  try {
    const result = await client.gather(ECHO_PATTERN, REQUEST_DATA, { timeout: 30_000 });
    return result.completedBy === 'all' && result.replies.length === expected;
  } catch {
    return false;
  }
}

async function measure(client: BufferClient, expected: number, tally: KindCounts, tallyCost: TallyCost): Promise<Rep> {
  let kindsBefore = emptyKindCounts();
  const run = await windows(
    () => gatherOnce(client, expected),
    () => {
      kindsBefore = subtractKindCounts(tally, emptyKindCounts());
      tallyCost.reset();
    },
  );
  const tallyUs = tallyCost.measure();
  return {
    sequentialP50: percentile(run.times, 50),
    sequentialP99: percentile(run.times, 99),
    sequentialCount: run.times.length,
    gathersPerSecond: run.gathersPerSecond,
    callerUsPerReply: (run.cpuUs - tallyUs) / (run.gathers * expected),
    tallyUsPerReply: tallyUs / (run.gathers * expected),
    inexact: run.inexact,
    kinds: subtractKindCounts(tally, kindsBefore),
  };
}

async function main(): Promise<void> {
  log(`${cpus().length} cores (${cpus()[0]?.model}), load average ${loadavg().map((value) => value.toFixed(2)).join(' ')}; counts ${counts.join(', ')}, batching ${batchings.join(', ')}, ${reps} repetitions, ${processes} instance processes, ${seconds} s windows`);
  const redis = await startRedis();
  const endpoints = { redisUrl: redis.url, redisPort: redis.port, natsUrl: undefined, namespace: `bench${process.pid}` };
  const namespace = `${endpoints.namespace}-instances`;
  const rows: string[] = [];
  for (const batching of batchings) for (const count of counts) {
    const per = Math.ceil(count / processes);
    const workers: Worker[] = [];
    for (let first = 1; first <= count; first += per) {
      const lastId = Math.min(count, first + per - 1);
      workers.push(await Worker.start(`instances ${first}-${lastId}`, 'sim-instances', [String(first), String(lastId), batching], endpoints, [], 120_000));
    }
    const client = new BufferClient({ redis: redis.url, namespace, instanceId: `bench-caller-${process.pid}`, timeout: 30_000 });
    await client.connect();
    for (let waited = 0; client.knownInstances().length < count && waited < 20_000; waited += 100) await sleep(100);
    const known = client.knownInstances().length;
    const { publisher, subscriber } = client.unwrap<{ publisher: Redis; subscriber: Redis }>();
    const tallyCost = new TallyCost();
    const tally = countPublishes(publisher, subscriber, tallyCost);
    // Warm-up (JIT, connections), not recorded.
    const warmEnd = nowMs() + 1000;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (nowMs() < warmEnd) await gatherOnce(client, count);
    }));
    const floor = new WireFloorCaller(redis.url, namespace);
    await floor.connect();
    const floorWarmEnd = nowMs() + 1000;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (nowMs() < floorWarmEnd) await floor.gather(count);
    }));
    const results: Rep[] = [];
    const floors: FloorRep[] = [];
    for (let rep = 0; rep < reps; rep++) {
      // The library and the wire floor by turns, the floor first every other repetition.
      const floorFirst = rep % 2 === 1;
      if (floorFirst) floors.push(await measureFloor(floor, count));
      const result = await measure(client, count, tally, tallyCost);
      if (!floorFirst) floors.push(await measureFloor(floor, count));
      results.push(result);
      const f = floors.at(-1)!;
      log(`${count} instances, ${batching} batches, wire floor rep ${rep + 1}/${reps}: sequential p50 ${f.sequentialP50.toFixed(2)} ms | ${f.gathersPerSecond.toFixed(0)} gathers/s @${IN_FLIGHT}, caller ${f.callerUsPerReply.toFixed(3)} µs/reply`);
      const k = result.kinds;
      log(
        `${count} instances, ${batching} batches (caller knows ${known}) rep ${rep + 1}/${reps}: sequential p50 ${result.sequentialP50.toFixed(2)} ms p99 ${result.sequentialP99.toFixed(2)} ms (${result.sequentialCount}) | ` +
          `${result.gathersPerSecond.toFixed(0)} gathers/s @${IN_FLIGHT}, caller ${result.callerUsPerReply.toFixed(3)} µs/reply (tally ${result.tallyUsPerReply.toFixed(3)} left out) | inexact ${result.inexact} | ` +
          `PUBLISHes req ${k.request.messages} reply ${k.reply.messages} (${k.reply.envelopes} replies) ping ${k.ping.messages} pong ${k.pong.messages} who ${k.who.messages} hello ${k.hello.messages} bye ${k.bye.messages}`,
      );
    }
    const med = (pick: (rep: Rep) => number): number => median(results.map(pick));
    const floorMed = (pick: (rep: FloorRep) => number): number => median(floors.map(pick));
    // Per-repetition ratios, library over floor (lower is better for time and CPU).
    const ratio = (pickLib: (rep: Rep) => number, pickFloor: (rep: FloorRep) => number): string => `${median(results.map((rep, index) => pickLib(rep) / pickFloor(floors[index]!))).toFixed(2)}x`;
    const membership = results.reduce((sum, rep) => sum + rep.kinds.ping.messages + rep.kinds.pong.messages + rep.kinds.who.messages + rep.kinds.hello.messages + rep.kinds.bye.messages, 0);
    const all = results.reduce((sum, rep) => sum + Object.values(rep.kinds).reduce((total, kind) => total + kind.messages, 0), 0);
    rows.push(
      `| ${count} | ${batching} | ${med((rep) => rep.callerUsPerReply).toFixed(3)} | ${med((rep) => rep.tallyUsPerReply).toFixed(3)} | ${med((rep) => rep.sequentialP50).toFixed(2)} | ${med((rep) => rep.sequentialP99).toFixed(2)} | ${med((rep) => rep.gathersPerSecond).toFixed(0)} | ${results.reduce((sum, rep) => sum + rep.inexact, 0)} | ${all === 0 ? 'n/a' : `${((100 * membership) / all).toFixed(2)}%`} | ` +
        `${floorMed((rep) => rep.callerUsPerReply).toFixed(3)} (${ratio((rep) => rep.callerUsPerReply, (rep) => rep.callerUsPerReply)}) | ${floorMed((rep) => rep.sequentialP50).toFixed(2)} (${ratio((rep) => rep.sequentialP50, (rep) => rep.sequentialP50)}) | ${floorMed((rep) => rep.gathersPerSecond).toFixed(0)} |`,
    );
    await floor.close();
    await client.close();
    await Promise.all(workers.map((worker) => worker.stop()));
  }
  killAll();
  process.stdout.write(
    [
      `Simulated instances in ${processes} processes (batches: \`own\`, each instance publishes its own batches, as deployed; \`shared\`, a process's instances batched together; both within the library's limits of 256 envelopes and 64 KiB), the library's BufferClient.gather as the caller, ${IN_FLIGHT} in flight for gathers/s and µs/reply (caller CPU time / replies, without the CPU time the benchmark spent counting PUBLISHes by kind in the caller, estimated by replaying a sample of the messages, and shown beside it), medians of ${reps} repetitions of ${seconds} s; load average at the end ${loadavg().map((value) => value.toFixed(2)).join(' ')}.`,
      '',
      `Wire floor: plain ioredis on the same wire and the same simulated instances, measured by turns with the library in each repetition; in brackets, the median of per-repetition ratios, library / floor.`,
      '',
      `| instances | batches | caller µs per reply @${IN_FLIGHT} | tally µs per reply (left out) | sequential p50 ms | sequential p99 ms | gathers/s @${IN_FLIGHT} | inexact gathers | membership share of PUBLISHes @${IN_FLIGHT} | wire floor: caller µs per reply @${IN_FLIGHT} | wire floor: sequential p50 ms | wire floor: gathers/s @${IN_FLIGHT} |`,
      '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
    ].join('\n'),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:instances failed: ${String((error as Error)?.stack ?? error)}\n`);
  killAll();
  process.exit(1);
});
