// `node bench/dist/bench/src/drift.js [systems] [--rounds=K] [--no-512] [--idle=S] [--n=K]`: whether a long-running
// caller gets slower, and whether the load-level series of a full run (which ends each N = 4
// repetition at 512 in flight) leaves it so. One caller process per system for the whole run, as
// run.ts keeps them, with 4 responding instances each (K with --n=K); `rounds` rounds (default 5), each of three
// 2 s windows at 64 in flight per system, by turns, and (unless --no-512) a 2 s window at 512 in
// flight. Prints each window's requests/s and the CPU time per request of the caller, the
// responders (all 4 together) and redis-server, the PUBLISHes per request, and each core's speed
// over the window (cpu-speed.ts). Systems as for run.ts (default lib,coalesced).
import { CoreSpeedMonitor, formatSpeeds } from './cpu-speed.js';
import { killAll, startRedis, startResponderProcesses, Worker } from './infra.js';
import type { Endpoints, LoadResult, SystemName } from './common.js';

const argv = process.argv.slice(2);
const systems = (argv.find((arg) => !arg.startsWith('--')) ?? 'lib,coalesced').split(',') as SystemName[];
const rounds = Number(argv.find((arg) => arg.startsWith('--rounds='))?.slice(9) ?? 5);
const with512 = !argv.includes('--no-512');
// --idle=S: S seconds with no load after each round (as a full run leaves each system idle while the others run).
const idleSec = Number(argv.find((arg) => arg.startsWith('--idle='))?.slice(7) ?? 0);
const N = Number(argv.find((arg) => arg.startsWith('--n='))?.slice(4) ?? 4);

const redis = await startRedis();
const endpoints: Endpoints = { redisUrl: redis.url, redisPort: redis.port, natsUrl: undefined, namespace: `drift${process.pid}`, tally: false };
const callers = new Map<SystemName, Worker>();
const responderPids = new Map<SystemName, number[]>();
for (const system of systems) {
  callers.set(system, await Worker.start(`caller ${system}`, 'caller', [system], endpoints, ['--expose-gc']));
  const ids = Array.from({ length: N }, (_, index) => `${system}-r${index + 1}`);
  responderPids.set(system, (await startResponderProcesses(system, endpoints, ids, 1)).map((worker) => worker.pid));
}
const load = (system: SystemName, concurrency: number, durationMs: number): Promise<LoadResult> =>
  callers.get(system)!.call({ op: 'load', n: N, concurrency, warmupMs: 500, durationMs, responderPids: responderPids.get(system) });
const figures = (result: LoadResult): string =>
  `${Math.round(result.rps)} req/s, caller ${result.callerCpuUsPerRequest?.toFixed(1)} / responders ${result.responderCpuUsPerRequest?.toFixed(1)} / redis ${result.redisCpuUsPerRequest?.toFixed(1)} µs, ${result.publishesPerRequest?.toFixed(3)} PUBLISH`;
// One probe per core (cpu-speed.ts): each window's figures end with how fast the cores were meanwhile.
const coreSpeed = new CoreSpeedMonitor();
coreSpeed.start();
const measured = async (system: SystemName, concurrency: number): Promise<string> => {
  const began = coreSpeed.mark();
  const result = await load(system, concurrency, 2000);
  return `${figures(result)}, cores ${formatSpeeds(coreSpeed.since(began))} ms`;
};

try {
  for (const system of systems) await load(system, 64, 1000);
  console.log(`${systems.join(', ')}; N = ${N}; ${rounds} rounds of three 2 s windows at 64 in flight${with512 ? ', each round ended by 2 s at 512' : ''}; CPU time per request`);
  for (let round = 1; round <= rounds; round++) {
    for (const system of systems) {
      const windows: string[] = [];
      for (let window = 0; window < 3; window++) windows.push(await measured(system, 64));
      console.log(`round ${round} ${system.padEnd(9)} @64: ${windows.join(' | ')}`);
      if (with512) console.log(`round ${round} ${system.padEnd(9)} @512: ${await measured(system, 512)}`);
    }
    if (idleSec > 0) await new Promise((resolve) => setTimeout(resolve, idleSec * 1000));
  }
} finally {
  coreSpeed.stop();
  killAll();
}
process.exit(0);
