// Processes the benchmark starts: redis-server, nats-server, caller and responder processes.
// Every one is registered here and killed when the orchestrator exits, also on error or SIGINT.
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForPort } from '../../test/support/redis-server.js';
import type { Endpoints, SystemName } from './common.js';

export { freePort };

const here = dirname(fileURLToPath(import.meta.url));
const children = new Set<ChildProcess>();
const tempDirs: string[] = [];

export function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping every process it started\n`);
    killAll();
    process.exit(130);
  });
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function versionOf(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8' }).trim();
  } catch {
    return 'not installed';
  }
}

export async function startRedis(): Promise<{ url: string; port: number; pid: number }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rb-bench-redis-'));
  tempDirs.push(dir);
  const child = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no', '--maxclients', '10000'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  await Promise.race([
    waitForPort(port, 10_000),
    new Promise<never>((_, reject) => child.once('error', (error) => reject(new Error(`Could not start redis-server (${error.message}); apt-get install redis-server`)))),
  ]);
  return { url: `redis://127.0.0.1:${port}`, port, pid: child.pid! };
}

export async function startNats(): Promise<{ url: string; pid: number } | undefined> {
  const binary = commandExists('nats-server') ? 'nats-server' : undefined;
  if (binary === undefined) return undefined;
  const port = await freePort();
  const child = track(spawn(binary, ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'ignore'] }));
  await Promise.race([waitForPort(port, 10_000), new Promise<never>((_, reject) => child.once('error', reject))]);
  return { url: `127.0.0.1:${port}`, pid: child.pid! };
}

/** A forked bench process speaking JSON over IPC. */
export class Worker {
  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(name: string, script: 'caller' | 'responder' | 'sim-instances', args: string[], endpoints: Endpoints, execArgv: string[] = [], timeoutMs = 60_000): Promise<Worker> {
    const child = track(
      fork(join(here, `${script}.js`), args, {
        env: { ...process.env, BENCH_ENDPOINTS: JSON.stringify(endpoints) },
        // BENCH_NODE_ARGS: extra Node/V8 flags for every caller and responder (all systems alike).
        execArgv: [...execArgv, ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready after ${timeoutMs} ms`)), timeoutMs);
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code}) before it was ready`));
      });
    });
    return new Worker(name, child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T>(command: object, timeoutMs = 300_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: no answer to ${JSON.stringify(command)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (message: { ok: boolean; result?: T; error?: string }): void => {
        cleanup();
        if (message.ok) resolve(message.result as T);
        else reject(new Error(`${this.name}: ${message.error}`));
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`${this.name} exited (${code}) during ${JSON.stringify(command)}`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send(command);
    });
  }

  /** Asks the process to exit (so --cpu-prof can write its profile); kills it after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
      }, graceMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      if (child.connected) child.send({ op: 'exit' });
      else child.kill('SIGTERM');
    });
  }
}

/** Responder processes for one system: `processes` processes sharing `ids` round-robin. */
export async function startResponderProcesses(system: SystemName, endpoints: Endpoints, ids: readonly string[], processes: number, execArgv: string[] = []): Promise<Worker[]> {
  const groups: string[][] = Array.from({ length: processes }, () => []);
  ids.forEach((id, index) => groups[index % processes]!.push(id));
  return Promise.all(groups.filter((group) => group.length > 0).map((group, index) => Worker.start(`responder ${system}#${index}`, 'responder', [system, group.join(',')], endpoints, execArgv)));
}
