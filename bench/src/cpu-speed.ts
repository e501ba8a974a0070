// How fast each core of this machine is right now: the CPU time one fixed piece of work (JSON
// parsing and writing of a batch of 64 compact requests, the protocol's own kind of work) takes on
// it, in milliseconds. On a shared virtual machine the cores do not run at one speed: measured on
// the 2-core machine of bench/NOTES.md, the same work took 17 ms on one core and 26 ms on the other
// for a minute, then 26 ms on both. Every CPU time per request in the report moves with it, so the
// benchmark keeps one probe per core running (`CoreSpeedMonitor`: a unit every half second, about 3%
// of a core) and reports the median of each core's units during each system's windows beside the
// figures. `node bench/dist/bench/src/cpu-speed.js [--every=S] [--count=K]` prints each core's
// median over every S seconds (default 1), K times (default 60). Needs `taskset` (util-linux).
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const SAMPLE = JSON.stringify(Array.from({ length: 64 }, (_, index) => [`r${index}.k3x9`, 'resource.holder', 30_000, { resource: 'A', n: index }]));

/** One unit of work: 300 parses and writes of the sample; returns something so it is not optimised away. */
function unit(): number {
  let total = 0;
  for (let index = 0; index < 300; index++) total += JSON.stringify(JSON.parse(SAMPLE) as unknown[]).length;
  return total;
}

/** The CPU ms one unit takes in this process now. */
function timedUnit(): number {
  const before = process.cpuUsage();
  unit();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

/**
 * One probe per core, pinned there with `taskset`, timing a unit every `everyMs` for as long as it
 * runs: what each core's speed was over a stretch of time (`mark`, then `since`). Without
 * `taskset`, no probe runs and `since` has nothing.
 */
export class CoreSpeedMonitor {
  private readonly samples: Array<Array<{ at: number; ms: number }>> = [];
  private readonly probes: ChildProcess[] = [];

  start(everyMs = 500): void {
    const script = fileURLToPath(import.meta.url);
    cpus().forEach((_, core) => {
      const list: Array<{ at: number; ms: number }> = [];
      this.samples.push(list);
      const probe = spawn('taskset', ['-c', String(core), process.execPath, script, `--serve=${everyMs}`], { stdio: ['ignore', 'pipe', 'ignore'] });
      probe.on('error', () => undefined);
      let rest = '';
      probe.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop()!;
        for (const line of lines) {
          const ms = Number(line);
          if (Number.isFinite(ms) && ms > 0) list.push({ at: Date.now(), ms });
        }
      });
      this.probes.push(probe);
    });
  }

  /** Now, as `since` takes it. */
  mark(): number {
    return Date.now();
  }

  /** Each core's median ms per unit since `mark` (`undefined` for a core with no unit since). */
  since(mark: number): Array<number | undefined> {
    return this.samples.map((list) => {
      const values = list.filter((sample) => sample.at >= mark).map((sample) => sample.ms).sort((a, b) => a - b);
      return values.length === 0 ? undefined : values[values.length >> 1];
    });
  }

  stop(): void {
    for (const probe of this.probes) probe.kill();
  }
}

/** `17.1/26.0` (ms per unit, per core). */
export function formatSpeeds(speeds: ReadonlyArray<number | undefined>): string {
  return speeds.map((value) => (value === undefined ? '?' : value.toFixed(1))).join('/');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const serve = process.argv.find((arg) => arg.startsWith('--serve='));
  if (serve !== undefined) {
    // Under CoreSpeedMonitor: one unit every S ms until killed, or until its parent is gone (EPIPE).
    for (let index = 0; index < 20; index++) unit();
    setInterval(() => process.stdout.write(`${timedUnit()}\n`), Number(serve.slice(8)));
    process.stdout.on('error', () => process.exit(0));
  } else {
    const every = Number(process.argv.find((arg) => arg.startsWith('--every='))?.slice(8) ?? 1);
    const count = Number(process.argv.find((arg) => arg.startsWith('--count='))?.slice(8) ?? 60);
    console.log(`CPU ms of one fixed unit of JSON work on each core (${cpus().length} cores), the median over each ${every} s`);
    const monitor = new CoreSpeedMonitor();
    monitor.start(Math.min(500, every * 1000));
    for (let index = 0; index < count; index++) {
      const began = monitor.mark();
      await new Promise((resolve) => setTimeout(resolve, every * 1000));
      console.log(`${new Date().toISOString().slice(11, 19)} ${formatSpeeds(monitor.since(began))}`);
    }
    monitor.stop();
  }
}
