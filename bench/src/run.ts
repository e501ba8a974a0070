// `npm run bench`: starts redis-server (and nats-server when present) on free loopback ports, runs
// every system with its responders in other processes, and writes bench/RESULTS.md, bench/results.json
// and the SVG charts. Flags: --quick (about 3 minutes), --reps=K, --no-profile, --report-only.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BurstResult, type Endpoints, type InflightResult, type LatencyResult, type LoadResult, type MemoryResult, type SystemName } from './common.js';
import { CoreSpeedMonitor, formatSpeeds } from './cpu-speed.js';
import { killAll, startNats, startRedis, startResponderProcesses, versionOf, Worker } from './infra.js';
import { summarizeProfile, type ProfileSummary } from './profile.js';
import { writeReport } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
// Compiled to bench/dist/bench/src (rootDir is the repository, to share test/support).
const benchDir = join(here, '..', '..', '..');
const repoRoot = join(benchDir, '..');

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
// --profile-only: no measurements, only the profile (for iterating on the library's hot paths).
const profileOnly = argv.includes('--profile-only');
const profileOn = profileOnly || (!argv.includes('--no-profile') && !argv.includes('--main-only'));
const repsArg = argv.find((arg) => arg.startsWith('--reps='));
// For iterating on the library: --systems=lib,coalesced runs only those; --main-only skips memory,
// scale and profile; --out=DIR writes the report elsewhere (default: bench/).
const systemsArg = argv.find((arg) => arg.startsWith('--systems='))?.slice(10).split(',');
const mainOnly = argv.includes('--main-only');
const outArg = argv.find((arg) => arg.startsWith('--out='))?.slice(6);
const baselineArg = argv.find((arg) => arg.startsWith('--baseline='))?.slice(11);
// --baseline-name="…": what the --baseline build is, as the report names it.
const baselineNameArg = argv.find((arg) => arg.startsWith('--baseline-name='))?.slice(16);
// --profile-n=K: profile with K responding instances instead of 4.
const profileNArg = argv.find((arg) => arg.startsWith('--profile-n='))?.slice(12);
// --ns=1,4: measure only these numbers of responding instances.
// --profile-system=coalesced: profile another system than the library (to compare where time goes).
const profileSystem = (argv.find((arg) => arg.startsWith('--profile-system='))?.slice(17) ?? 'lib') as SystemName;
// --no-tally: the callers do not count PUBLISHes by kind (a listener and a scan of each message in the caller).
const tallyOn = !argv.includes('--no-tally');
const nsArg = argv.find((arg) => arg.startsWith('--ns='))?.slice(5).split(',').map(Number);

export interface BenchConfig {
  readonly quick: boolean;
  readonly reps: number;
  readonly ns: number[];
  readonly latencyMs: number;
  readonly latencyMaxCount: number;
  /** The latency window is taken in this many slices, the systems' slices by turns. */
  readonly latencySlices: number;
  /** Unrecorded requests before each slice. */
  readonly latencySliceWarmupMs: number;
  readonly loadWarmupMs: number;
  readonly loadMs: number;
  readonly concurrency: number;
  readonly loadLevels: number[];
  readonly loadLevelN: number;
  readonly levelWarmupMs: number;
  readonly levelMs: number;
  readonly memoryWarmup: number;
  readonly memoryTotal: number;
  readonly inflightCount: number;
  readonly inflightHoldMs: number;
  readonly burstCount: number;
  readonly burstN: number;
  readonly scaleResponders: number;
  readonly scaleProcesses: number;
  readonly profileMs: number;
  readonly profileN: number;
}

const full: BenchConfig = {
  quick,
  reps: repsArg ? Number(repsArg.slice(7)) : 5,
  ns: profileOnly ? [] : (nsArg ?? [1, 4, 16]),
  latencyMs: 2000,
  latencyMaxCount: 50_000,
  latencySlices: 10,
  latencySliceWarmupMs: 50,
  loadWarmupMs: 500,
  loadMs: 3000,
  concurrency: 64,
  loadLevels: [1, 8, 64, 512],
  loadLevelN: 4,
  levelWarmupMs: 400,
  levelMs: 1500,
  memoryWarmup: 20_000,
  memoryTotal: 200_000,
  inflightCount: 10_000,
  inflightHoldMs: 3000,
  burstCount: 10_000,
  burstN: 4,
  scaleResponders: 64,
  scaleProcesses: 8,
  profileMs: 8000,
  profileN: profileNArg === undefined ? 4 : Number(profileNArg),
};

// --quick: fewer repetitions and shorter windows, the same measurements.
const config: BenchConfig = quick
  ? {
      ...full,
      reps: repsArg ? Number(repsArg.slice(7)) : 3,
      latencyMs: 700,
      latencyMaxCount: 20_000,
      latencySlices: 5,
      loadWarmupMs: 300,
      loadMs: 1000,
      levelWarmupMs: 200,
      levelMs: 600,
      profileMs: 4000,
    }
  : full;

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  redis: string;
  nats: string;
  packages: Record<string, string>;
  loadAverageAtStart: number[];
  date: string;
}

export interface Results {
  machine: Machine;
  config: BenchConfig;
  systems: SystemName[];
  natsSkipped: string | undefined;
  /** main[N][system] = one entry per repetition. */
  main: Record<number, Partial<Record<SystemName, { latency: LatencyResult[]; load: LoadResult[] }>>>;
  /**
   * cpuSpeed[N][system] = per repetition, the CPU ms of one fixed unit of work on each core, the
   * median over that system's throughput window (see cpu-speed.ts); absent in results
   * written before it was measured.
   */
  cpuSpeed?: Record<number, Partial<Record<SystemName, Array<Array<number | undefined>>>>>;
  /** levels[system][concurrency] = one entry per repetition, at N = config.loadLevelN. */
  levels: Partial<Record<SystemName, Record<number, LoadResult[]>>>;
  memory: Partial<Record<SystemName, MemoryResult>>;
  inflight: Partial<Record<SystemName, InflightResult[]>>;
  burst: Partial<Record<SystemName, BurstResult[]>>;
  scale: { responders: number; processes: number; latency: LatencyResult[]; load: LoadResult[]; burst: BurstResult[] } | undefined;
  profile: { caller: ProfileSummary; responder: ProfileSummary; load: LoadResult } | undefined;
  /** What the `--baseline` build is (`--baseline-name`), for the report. */
  baselineName?: string;
  durationSec: number;
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'n/a';
  }
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

const fmt = (value: number, digits = 3): string => value.toFixed(digits);

async function main(): Promise<void> {
  if (argv.includes('--report-only')) {
    // Rewrites RESULTS.md and the charts from an existing results.json (for example after editing NOTES.md).
    const outDir = outArg ?? benchDir;
    process.stdout.write(`${writeReport(JSON.parse(readFileSync(join(outDir, 'results.json'), 'utf8')) as Results, outDir, benchDir)}\n`);
    return;
  }
  const began = Date.now();
  const machine: Machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: `Linux ${release()}`,
    node: process.version,
    redis: versionOf('redis-server', ['--version']).split(' ').slice(0, 3).join(' '),
    nats: versionOf('nats-server', ['--version']),
    packages: Object.fromEntries(['ioredis', '@nestjs/core', '@nestjs/microservices', '@nats-io/transport-node', 'rxjs'].map((name) => [name, packageVersion(name)])),
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
    date: new Date().toISOString(),
  };
  log(`${quick ? 'quick' : 'full'} run, ${config.reps} repetitions; ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.redis}`);

  const redis = await startRedis();
  log(`redis-server on ${redis.url}`);
  const nats = await startNats();
  const natsSkipped = nats === undefined ? 'nats-server not found on PATH (apt-get install nats-server): NATS requestMany skipped' : undefined;
  if (nats === undefined) log(`SKIP: ${natsSkipped}`);
  else log(`nats-server on ${nats.url}`);
  const endpoints: Endpoints = { redisUrl: redis.url, redisPort: redis.port, natsUrl: nats?.url, namespace: `bench${process.pid}`, tally: tallyOn, baseline: baselineArg === undefined ? undefined : resolve(baselineArg) };

  const systems: SystemName[] = (['lib', ...(baselineArg ? (['base'] as const) : []), 'topic', 'otel', 'naive', 'coalesced', 'floornest', ...(nats ? (['nats'] as const) : []), 'nest'] as SystemName[]).filter(
    (system) => systemsArg === undefined || systemsArg.includes(system),
  );
  const callers = new Map<SystemName, Worker>();
  for (const system of systems) callers.set(system, await Worker.start(`caller ${system}`, 'caller', [system], endpoints, ['--expose-gc']));
  const results: Results = { machine, config, systems, natsSkipped, main: {}, levels: {}, memory: {}, inflight: {}, burst: {}, scale: undefined, profile: undefined, baselineName: baselineNameArg, durationSec: 0 };

  const latency = (system: SystemName, n: number): Promise<LatencyResult> =>
    callers.get(system)!.call({ op: 'latency', n, durationMs: config.latencyMs, maxCount: config.latencyMaxCount });
  // The responder processes of the current N, whose CPU time the caller reads over its window.
  let responderPids = new Map<SystemName, number[]>();
  const load = (system: SystemName, n: number, concurrency: number, warmupMs: number, durationMs: number): Promise<LoadResult> =>
    callers.get(system)!.call({ op: 'load', n, concurrency, warmupMs, durationMs, responderPids: responderPids.get(system) ?? [] });

  // One probe per core for the measured windows, so that each window's figures have the cores' speed beside them.
  const coreSpeed = new CoreSpeedMonitor();
  coreSpeed.start();
  for (const n of config.ns) {
    const present = systems.filter((system) => system !== 'nest' || n === 1);
    log(`N = ${n}: starting responders for ${present.join(', ')}`);
    const responders = new Map<SystemName, Worker[]>();
    for (const system of present) {
      const ids = Array.from({ length: n }, (_, index) => `${system}-r${index + 1}`);
      responders.set(system, await startResponderProcesses(system, endpoints, ids, 1));
    }
    responderPids = new Map([...responders].map(([system, workers]) => [system, workers.map((worker) => worker.pid)]));
    // Warm-up (JIT, connections, subscriptions), not recorded.
    for (const system of present) {
      await load(system, n, config.concurrency, 200, Math.max(500, config.loadWarmupMs));
      await callers.get(system)!.call({ op: 'latency', n, durationMs: 200, maxCount: 2000 });
    }
    const main: Results['main'][number] = {};
    results.main[n] = main;
    const speeds: NonNullable<Results['cpuSpeed']>[number] = {};
    (results.cpuSpeed ??= {})[n] = speeds;
    for (let rep = 0; rep < config.reps; rep++) {
      // Latency at one in flight: every system's window taken in slices, the systems by turns, so
      // that this machine's cores, whose speed changes within seconds, serve them alike.
      const sliced = new Map<SystemName, LatencyResult>();
      for (let slice = 0; slice < config.latencySlices; slice++) {
        for (const system of rotate(present, rep + slice)) {
          sliced.set(system, await callers.get(system)!.call<LatencyResult>({
            op: 'latency',
            n,
            durationMs: config.latencyMs / config.latencySlices,
            maxCount: config.latencyMaxCount,
            warmupMs: config.latencySliceWarmupMs,
            continued: slice > 0,
          }));
        }
      }
      // Round-robin, starting one system later each repetition, so drift hits every system alike.
      for (const system of rotate(present, rep)) {
        const entry = (main[system] ??= { latency: [], load: [] });
        const began = coreSpeed.mark();
        const lat = sliced.get(system)!;
        const tput = await load(system, n, config.concurrency, config.loadWarmupMs, config.loadMs);
        // How fast each core was meanwhile, for the figures of these windows.
        const speed = coreSpeed.since(began);
        (speeds[system] ??= []).push(speed);
        entry.latency.push(lat);
        entry.load.push(tput);
        const kinds = tput.publishesByKind;
        const membership = kinds === undefined ? '' : ` | PUBLISHes req ${kinds.request.messages} reply ${kinds.reply.messages} ping ${kinds.ping.messages} pong ${kinds.pong.messages} who ${kinds.who.messages} hello ${kinds.hello.messages} bye ${kinds.bye.messages}`;
        log(`N=${n} rep ${rep + 1}/${config.reps} ${system.padEnd(9)} cores ${formatSpeeds(speed)} ms | p50 ${fmt(lat.p50)} ms p99 ${fmt(lat.p99)} ms | ${Math.round(tput.rps)} req/s @${config.concurrency}${membership}${lat.errors + tput.errors > 0 ? ` ERRORS ${lat.errors + tput.errors}` : ''}`);
      }
      if (n === config.loadLevelN) {
        const levelSystems = (['lib', 'base', 'naive', 'coalesced'] as SystemName[]).filter((system) => systems.includes(system));
        for (const system of rotate(levelSystems, rep)) {
          for (const concurrency of config.loadLevels) {
            const result = await load(system, n, concurrency, config.levelWarmupMs, config.levelMs);
            ((results.levels[system] ??= {})[concurrency] ??= []).push(result);
          }
          const row = results.levels[system]!;
          log(`N=${n} rep ${rep + 1} under load ${system.padEnd(9)} ${config.loadLevels.map((c) => `@${c}: ${fmt(row[c]!.at(-1)!.p50)}/${fmt(row[c]!.at(-1)!.p99)} ms`).join('  ')}`);
        }
      }
    }
    if (n === 1 && !mainOnly && systems.includes('lib')) {
      log(`memory: heap and RSS over ${config.memoryTotal} requests (library)`);
      results.memory.lib = await callers.get('lib')!.call<MemoryResult>({ op: 'memory', n, warmup: config.memoryWarmup, total: config.memoryTotal, checkpoints: 4, concurrency: config.concurrency }, 600_000);
      const samples = results.memory.lib.samples;
      log(`memory: heap ${samples.map((sample) => (sample.heapUsed / 2 ** 20).toFixed(2)).join(' -> ')} MiB, rss ${samples.map((sample) => (sample.rss / 2 ** 20).toFixed(1)).join(' -> ')} MiB`);
      for (let rep = 0; rep < 3; rep++) {
        for (const system of rotate(present, rep)) {
          const result = await callers.get(system)!.call<InflightResult>({ op: 'inflight', n, count: config.inflightCount, holdMs: config.inflightHoldMs }, 120_000);
          (results.inflight[system] ??= []).push(result);
          log(`in flight: ${system.padEnd(9)} ${result.count} open, ${Math.round(result.bytesPerRequest)} bytes/request, ${result.answered} answered`);
        }
      }
    }
    if (n === config.burstN && !mainOnly) {
      for (let rep = 0; rep < 3; rep++) {
        for (const system of rotate((['lib', 'base', 'naive', 'coalesced'] as SystemName[]).filter((s) => systems.includes(s)), rep)) {
          const result = await callers.get(system)!.call<BurstResult>({ op: 'burst', n, count: config.burstCount, timeoutMs: 30_000 }, 120_000);
          (results.burst[system] ??= []).push(result);
          log(`burst: ${system.padEnd(9)} ${result.count} at once, ${result.complete} complete, ${result.lost} lost, ${Math.round(result.wallMs)} ms wall, p50 ${fmt(result.p50, 1)} p99 ${fmt(result.p99, 1)} ms`);
        }
      }
    }
    for (const workers of responders.values()) await Promise.all(workers.map((worker) => worker.stop()));
  }
  coreSpeed.stop();

  // Scale: 64 responding instances on one Redis, as several transports per process.
  if (!mainOnly && !profileOnly && systems.includes('lib')) {
    const n = config.scaleResponders;
    log(`scale: ${n} library responders in ${config.scaleProcesses} processes`);
    const ids = Array.from({ length: n }, (_, index) => `lib-s${index + 1}`);
    const workers = await startResponderProcesses('lib', endpoints, ids, config.scaleProcesses);
    await load('lib', n, 16, 200, 500);
    const scale: NonNullable<Results['scale']> = { responders: n, processes: config.scaleProcesses, latency: [], load: [], burst: [] };
    for (let rep = 0; rep < 3; rep++) {
      const lat = await latency('lib', n);
      const tput = await load('lib', n, config.concurrency, config.loadWarmupMs, config.loadMs);
      const burst = await callers.get('lib')!.call<BurstResult>({ op: 'burst', n, count: 1000, timeoutMs: 30_000 }, 120_000);
      scale.latency.push(lat);
      scale.load.push(tput);
      scale.burst.push(burst);
      log(`scale rep ${rep + 1}: p50 ${fmt(lat.p50)} p99 ${fmt(lat.p99)} ms, ${Math.round(tput.rps)} req/s @${config.concurrency} (errors ${lat.errors + tput.errors}), burst 1000: ${burst.complete} complete, ${burst.lost} lost`);
    }
    results.scale = scale;
    await Promise.all(workers.map((worker) => worker.stop()));
  }

  for (const worker of callers.values()) await worker.stop();

  if (profileOn && systems.includes(profileSystem)) {
    const dir = join(benchDir, '.runs', `profile-${Date.now()}`);
    mkdirSync(join(dir, 'caller'), { recursive: true });
    mkdirSync(join(dir, 'responder'), { recursive: true });
    log(`profile: ${profileSystem} at N=${config.profileN}, ${config.concurrency} in flight, ${config.profileMs} ms, --cpu-prof into ${dir}`);
    const ids = Array.from({ length: config.profileN }, (_, index) => `lib-p${index + 1}`);
    const responderWorkers = await startResponderProcesses(profileSystem, endpoints, ids, 1, ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'responder')}`]);
    const caller = await Worker.start(`caller ${profileSystem} (profiled)`, 'caller', [profileSystem], endpoints, ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'caller')}`]);
    const loadResult = await caller.call<LoadResult>({ op: 'load', n: config.profileN, concurrency: config.concurrency, warmupMs: 500, durationMs: config.profileMs });
    await caller.stop(10_000);
    await Promise.all(responderWorkers.map((worker) => worker.stop(10_000)));
    results.profile = { caller: summarizeProfile(join(dir, 'caller'), repoRoot), responder: summarizeProfile(join(dir, 'responder'), repoRoot), load: loadResult };
    log(`profile: ${Math.round(loadResult.rps)} req/s under the profiler`);
    if (profileOnly) {
      killAll();
      process.stdout.write(`${JSON.stringify(results.profile, null, 2)}\n`);
      return;
    }
  }

  results.durationSec = Math.round((Date.now() - began) / 1000);
  killAll();
  const outDir = outArg ?? benchDir;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const summary = writeReport(results, outDir, benchDir);
  log(`done in ${results.durationSec} s: wrote RESULTS.md, results.json, latency.svg, throughput.svg in ${outDir}`);
  process.stdout.write(`${summary}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${String((error as Error)?.stack ?? error)}\n`);
  killAll();
  process.exit(1);
});

