// `node bench/dist/bench/src/one-in-flight.js [systems] [--n=K] [--rounds=R] [--strace]`: what one request
// at a time costs each process. Per system (default lib,naive; K responding instances, default 1),
// R rounds (default 3) of a 3 s window with one request in flight, by turns; for each window the
// p50 and, per request, the CPU time and the voluntary / involuntary context switches of the caller,
// the responder process and redis-server (from /proc). With --strace, `strace -c -f` on the caller
// and the responder over each window writes the system calls to /tmp/one-in-flight-<system>-<process>-<round>.txt.
// `BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=<dir>"` profiles every caller and responder process.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpuMsOf } from './proc-cpu.js';
import { killAll, startRedis, startResponderProcesses, Worker } from './infra.js';
import type { Endpoints, LatencyResult, SystemName } from './common.js';

const argv = process.argv.slice(2);
const systems = (argv.find((arg) => !arg.startsWith('--')) ?? 'lib,naive').split(',') as SystemName[];
const N = Number(argv.find((arg) => arg.startsWith('--n='))?.slice(4) ?? 1);
const rounds = Number(argv.find((arg) => arg.startsWith('--rounds='))?.slice(9) ?? 3);
const traced = argv.includes('--strace');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface ProcessCounters {
  cpuUs: number;
  voluntary: number;
  involuntary: number;
}

function counters(pid: number): ProcessCounters {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const count = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)![1]);
  return { cpuUs: cpuMsOf([pid])! * 1000, voluntary: count('voluntary_ctxt_switches'), involuntary: count('nonvoluntary_ctxt_switches') };
}

const redis = await startRedis();
const endpoints: Endpoints = { redisUrl: redis.url, redisPort: redis.port, natsUrl: undefined, namespace: `one${process.pid}`, tally: false };
const processes = new Map<SystemName, { caller: Worker; responder: number; workers: Worker[] }>();
for (const system of systems) {
  const caller = await Worker.start(`caller ${system}`, 'caller', [system], endpoints, ['--expose-gc']);
  const ids = Array.from({ length: N }, (_, index) => `${system}-r${index + 1}`);
  const responders = await startResponderProcesses(system, endpoints, ids, 1);
  processes.set(system, { caller, responder: responders[0]!.pid, workers: [caller, ...responders] });
}
try {
  for (const system of systems) await processes.get(system)!.caller.call({ op: 'latency', n: N, durationMs: 1000, maxCount: 50_000 });
  console.log(`${systems.join(', ')}; N = ${N}; one request in flight, 3 s windows; per request: CPU µs, voluntary/involuntary context switches`);
  for (let round = 0; round < rounds; round++) {
    for (const system of systems) {
      const { caller, responder } = processes.get(system)!;
      const pids: Array<[string, number]> = [['caller', caller.pid], ['responder', responder], ['redis', redis.pid]];
      const traces = traced ? pids.slice(0, 2).map(([name, pid]) => spawn('strace', ['-c', '-f', '-p', String(pid), '-o', `/tmp/one-in-flight-${system}-${name}-${round}.txt`], { stdio: 'ignore' })) : [];
      if (traced) await sleep(500);
      const before = pids.map(([, pid]) => counters(pid));
      const result = await caller.call<LatencyResult>({ op: 'latency', n: N, durationMs: 3000, maxCount: 50_000 });
      const parts = pids.map(([name, pid], index) => {
        const after = counters(pid);
        const per = (value: number): string => (value / result.count).toFixed(2);
        return `${name} ${((after.cpuUs - before[index]!.cpuUs) / result.count).toFixed(1)} µs ${per(after.voluntary - before[index]!.voluntary)}/${per(after.involuntary - before[index]!.involuntary)}`;
      });
      for (const trace of traces) trace.kill('SIGINT');
      if (traced) await sleep(500);
      console.log(`round ${round + 1} ${system.padEnd(9)} p50 ${result.p50.toFixed(3)} ms, ${result.count} requests | ${parts.join(' | ')}`);
    }
  }
} finally {
  // Let them exit on their own, so that Node flags such as --cpu-prof (BENCH_NODE_ARGS) write their output.
  await Promise.all([...processes.values()].flatMap(({ workers }) => workers.map((worker) => worker.stop(10_000))));
  killAll();
}
process.exit(0);
