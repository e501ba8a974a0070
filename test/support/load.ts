import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const LOAD_APP = join(here, '..', 'fixtures', 'dist', 'load-app.js');
export const FAULT_APP = join(here, '..', 'fixtures', 'dist', 'fault-app.js');

export interface LoadStats {
  id: string;
  sent: number;
  ok: number;
  partial: number;
  allMissing: number;
  missingReasons: Record<string, number>;
  allWithObservers: number;
  forgedMessages: number;
  replayedMessages: number;
  errors: Record<string, number>;
  maxOverrunMs: number;
  oldestOpenMs: number;
  open: number;
  lastOkAt: number;
  unhandledRejections: number;
  uncaughtExceptions: number;
  outages: Array<{ from: number; to: number; failures: number }>;
  redisErrors: number;
  cpuMs: number;
  failing: boolean;
  at: number;
}

export interface LoadSpec {
  readonly id: string;
  /** A Redis URL; or, for a cluster or Sentinel, `connection` instead. */
  readonly redisUrl?: string;
  /** The `redis` / `cluster` options the caller uses (wins over `redisUrl`). */
  readonly connection?: object;
  readonly namespace: string;
  readonly pattern?: string;
  readonly payload?: unknown;
  readonly timeout?: number;
  readonly concurrency?: number;
  /** One key, or a rotation list (the first signs). */
  readonly signingKey?: string | readonly string[];
  readonly env?: Record<string, string>;
}

/** A caller process (test/fixtures/load-app.ts) keeping steady load on the instances. */
export class LoadProcess {
  private output = '';
  private latest: LoadStats | undefined;

  private constructor(
    readonly spec: LoadSpec,
    private readonly child: ChildProcess,
  ) {}

  static async start(spec: LoadSpec): Promise<LoadProcess> {
    const child = spawn(process.execPath, [LOAD_APP], {
      env: {
        ...process.env,
        LOAD_ID: spec.id,
        ...(spec.redisUrl === undefined ? {} : { REDIS_URL: spec.redisUrl }),
        ...(spec.connection === undefined ? {} : { REDIS_CONNECTION: JSON.stringify(spec.connection) }),
        NAMESPACE: spec.namespace,
        PATTERN: spec.pattern ?? 'whoami',
        PAYLOAD: JSON.stringify(spec.payload ?? null),
        TIMEOUT: String(spec.timeout ?? 1000),
        CONCURRENCY: String(spec.concurrency ?? 8),
        SIGNING_KEY: typeof spec.signingKey === 'string' ? spec.signingKey : (spec.signingKey ?? []).join(','),
        ...spec.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const load = new LoadProcess(spec, child);
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('STAT ') || line.startsWith('FINAL ')) load.latest = JSON.parse(line.slice(line.indexOf(' ') + 1)) as LoadStats;
        else load.output += `${line}\n`;
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (load.output += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Load ${spec.id} did not start:\n${load.output}`)), 10_000);
      const check = setInterval(() => {
        if (load.latest !== undefined) {
          clearTimeout(timer);
          clearInterval(check);
          resolve();
        }
      }, 20);
      child.once('exit', (code) => {
        clearTimeout(timer);
        clearInterval(check);
        reject(new Error(`Load ${spec.id} exited (${code}):\n${load.output}`));
      });
    });
    return load;
  }

  get stats(): LoadStats {
    return this.latest!;
  }

  get logs(): string {
    return this.output;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Waits until `predicate` holds on the latest report, or throws after `timeoutMs`. */
  async until(predicate: (stats: LoadStats) => boolean, timeoutMs: number, what: string): Promise<LoadStats> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.latest!)) {
      if (Date.now() > deadline) throw new Error(`${this.spec.id}: ${what} not reached in ${timeoutMs} ms; last: ${JSON.stringify(this.latest)}\n${this.output}`);
      if (this.exited) throw new Error(`${this.spec.id} exited:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.latest!;
  }

  /** Stops issuing, waits for the requests in flight, returns the final report. */
  async stop(): Promise<LoadStats> {
    if (this.exited) return this.latest!;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.write('stop\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    return this.latest!;
  }
}

export async function startLoads(specs: readonly LoadSpec[]): Promise<LoadProcess[]> {
  return Promise.all(specs.map((spec) => LoadProcess.start(spec)));
}

/** Sums the error counts of several reports. */
export function totalErrors(reports: readonly LoadStats[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const report of reports) for (const [code, count] of Object.entries(report.errors)) total[code] = (total[code] ?? 0) + count;
  return total;
}
