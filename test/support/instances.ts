import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK).
const CLOCK_TICKS = 100;
export const FIXTURE_APP = join(here, '..', 'fixtures', 'dist', 'instance-app.js');

export interface InstanceSpec {
  readonly instanceId: string;
  /** A Redis URL; or, for a cluster or Sentinel, `connection` instead. */
  readonly redisUrl?: string;
  /** The `redis` / `cluster` options the instance uses (wins over `redisUrl`). */
  readonly connection?: object;
  readonly namespace: string;
  readonly resources?: readonly string[];
  readonly env?: Record<string, string>;
  /** The compiled script to run instead of the standard fixture app. */
  readonly script?: string;
}

/** One app instance running as its own Node process, as in production. */
export class InstanceProcess {
  private output = '';

  private constructor(
    readonly spec: InstanceSpec,
    private readonly child: ChildProcess,
  ) {}

  static async start(spec: InstanceSpec, timeoutMs = 20_000): Promise<InstanceProcess> {
    const child = spawn(process.execPath, [spec.script ?? FIXTURE_APP], {
      env: {
        ...process.env,
        ...(spec.redisUrl === undefined ? {} : { REDIS_URL: spec.redisUrl }),
        ...(spec.connection === undefined ? {} : { REDIS_CONNECTION: JSON.stringify(spec.connection) }),
        INSTANCE_ID: spec.instanceId,
        NAMESPACE: spec.namespace,
        RESOURCES: (spec.resources ?? []).join(','),
        ...spec.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const instance = new InstanceProcess(spec, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Instance ${spec.instanceId} not ready after ${timeoutMs} ms:\n${instance.output}`)), timeoutMs);
      const onData = (chunk: Buffer): void => {
        instance.output += chunk.toString();
        if (instance.output.includes(`READY ${spec.instanceId}`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (chunk: Buffer) => (instance.output += chunk.toString()));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Instance ${spec.instanceId} exited (${code ?? signal}) before it was ready:\n${instance.output}`));
      });
    });
    return instance;
  }

  get id(): string {
    return this.spec.instanceId;
  }

  get logs(): string {
    return this.output;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** CPU time (user + system) the process has used so far, in ms (Linux: /proc). */
  cpuMs(): number {
    const fields = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat(5), counted here from field 3 (state).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  }

  /** Sends `signal` without waiting (SIGSTOP / SIGCONT to freeze and thaw it). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Sends `signal` and waits for the process to exit; resolves with its exit code or signal. */
  stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | string> {
    return stopChild(this.child, signal, timeoutMs);
  }
}

/** Sends `signal` to a child process and waits for its exit (SIGKILL after `timeoutMs`); resolves with its exit code or signal. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode ?? 'exited');
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      resolve(code ?? sig ?? 'exited');
    });
    child.kill(signal);
  });
}

export async function startInstances(specs: readonly InstanceSpec[]): Promise<InstanceProcess[]> {
  return Promise.all(specs.map((spec) => InstanceProcess.start(spec)));
}

export async function stopAll(instances: readonly InstanceProcess[]): Promise<void> {
  await Promise.all(instances.map((instance) => instance.stop()));
}

/** Instances a test file starts one by one, all on one Redis and namespace, stopped together. */
export class InstanceSpawner {
  readonly spawned: InstanceProcess[] = [];

  constructor(
    private readonly redisUrl: () => string,
    private readonly namespace: string,
    private readonly script: string,
  ) {}

  async spawn(instanceId: string, env: Record<string, string> = {}): Promise<InstanceProcess> {
    const instance = await InstanceProcess.start({ instanceId, redisUrl: this.redisUrl(), namespace: this.namespace, script: this.script, env });
    this.spawned.push(instance);
    return instance;
  }

  /** Stops every instance started so far. */
  stopAll(): Promise<void> {
    return stopAll(this.spawned.splice(0));
  }
}
