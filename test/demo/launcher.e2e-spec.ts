// The `npm run demo` launcher as a user runs it: its own redis-server and instances, faults injected
// through its control endpoint, and every way of stopping it (SIGTERM, SIGHUP, Ctrl-C's SIGINT)
// checked for leftovers: processes, ports, the temporary folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/redis-server.js';

const here = dirname(fileURLToPath(import.meta.url));
const LAUNCHER = join(here, '..', '..', 'apps', 'resource-service', 'scripts', 'demo.js');
const TOKEN = 'launcher-test-token';

interface LauncherView {
  instances: Array<{ name: string; url: string; port: number; status: string; note: string | null; pid: number | null }>;
  redis: { pid: number | null; url: string };
  tempDir: string | null;
}

/** One `node scripts/demo.js` with its own TMPDIR, ports and namespace. */
class Launcher {
  output = '';

  private constructor(
    readonly child: ChildProcess,
    readonly tmp: string,
    readonly controlUrl: string,
  ) {}

  static async start(args: string[], env: Record<string, string> = {}, count = 3): Promise<Launcher> {
    const tmp = mkdtempSync(join(tmpdir(), 'resource-demo-launcher-'));
    const basePort = await consecutiveFreePorts(count);
    const controlPort = await freePort();
    const { REDIS_URL: _external, ...inherited } = process.env;
    const child = spawn(process.execPath, [LAUNCHER, ...args], {
      env: {
        ...inherited,
        TMPDIR: tmp,
        DEMO_PORT: String(basePort),
        DEMO_CONTROL_PORT: String(controlPort),
        DEMO_CONTROL_TOKEN: TOKEN,
        NAMESPACE: `launcher-${randomBytes(4).toString('hex')}`,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const launcher = new Launcher(child, tmp, `http://127.0.0.1:${controlPort}`);
    child.stdout!.on('data', (chunk: Buffer) => (launcher.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (launcher.output += chunk.toString()));
    await launcher.waitForOutput('Press Ctrl-C to stop everything.', 30_000);
    return launcher;
  }

  async waitForOutput(text: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.output.includes(text)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`The launcher exited before printing "${text}":\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`The launcher did not print "${text}" within ${timeoutMs} ms:\n${this.output}`);
      await sleep(25);
    }
  }

  async view(): Promise<LauncherView> {
    return (await (await fetch(`${this.controlUrl}/instances`, { headers: { 'X-Demo-Token': TOKEN } })).json()) as LauncherView;
  }

  /** Sends `signal` and resolves with the exit code once it has exited. */
  stop(signal: NodeJS.Signals): Promise<number | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
      this.child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
      this.child.kill(signal);
    });
  }

  /** The test's last resort, and removal of its TMPDIR. */
  async cleanUp(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) await this.stop('SIGTERM');
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

describe('npm run demo: the launcher', () => {
  const launchers: Launcher[] = [];

  afterAll(async () => {
    for (const launcher of launchers) await launcher.cleanUp();
  });

  /** Stops the launcher with `signal` and checks that nothing it started is left. */
  async function expectStopsCleanly(launcher: Launcher, signal: NodeJS.Signals): Promise<void> {
    const view = await launcher.view();
    const pids = [...view.instances.map((instance) => instance.pid), view.redis.pid].filter((pid): pid is number => pid !== null);
    expect(pids).toHaveLength(view.instances.length + 1);
    const ports = [...view.instances.map((instance) => instance.port), Number(new URL(view.redis.url).port), Number(new URL(launcher.controlUrl).port)];
    expect(readdirSync(launcher.tmp)).toEqual([view.tempDir!.split('/').pop()]);

    expect(await launcher.stop(signal)).toBe(0);
    expect(launcher.output).toContain('Stopped cleanly.');
    for (const pid of pids) expect(isRunning(pid)).toBe(false);
    for (const port of ports) expect(await portIsFree(port)).toBe(true);
    expect(readdirSync(launcher.tmp)).toEqual([]);
  }

  it('--instances 3: a frozen instance is named by the lookup, a killed one is reported and restarted while the others serve; SIGTERM leaves nothing', async () => {
    const launcher = await Launcher.start(['--instances', '3'], { DEMO_RESTART_MS: '500', LOOKUP_TIMEOUT_MS: '1500' });
    launchers.push(launcher);
    const [one, two] = (await launcher.view()).instances;
    expect((await launcher.view()).instances.map((instance) => [instance.name, instance.status])).toEqual([
      ['one', 'running'],
      ['two', 'running'],
      ['three', 'running'],
    ]);
    // Only the instances hold the token; a page route needs the header only the page's own origin can send.
    expect((await fetch(`${launcher.controlUrl}/instances/three/kill`, { method: 'POST' })).status).toBe(403);
    expect((await fetch(`${one!.url}/demo/instances/three/kill`, { method: 'POST' })).status).toBe(400);
    const demo = (url: string, action: string, name: string): Promise<Response> => fetch(`${url}/demo/instances/${name}/${action}`, { method: 'POST', headers: { 'X-Demo-Control': '1' } });

    // Frozen through the page's route: the lookup ends by its deadline, naming it.
    expect((await demo(one!.url, 'freeze', 'three')).status).toBe(200);
    const partial = await fetch(`${one!.url}/resources/nowhere`);
    const body = (await partial.json()) as { missing: string[]; outcome: string };
    expect(partial.status).toBe(504);
    expect(body).toMatchObject({ outcome: 'partial', missing: ['three'] });
    expect((await demo(one!.url, 'thaw', 'three')).status).toBe(200);

    // Killed: every instance hears it at once, the others keep serving, and it comes back.
    const killedPid = (await launcher.view()).instances.find((instance) => instance.name === 'two')!.pid!;
    expect((await demo(one!.url, 'kill', 'two')).status).toBe(200);
    await launcher.waitForOutput('demo: two killed by SIGKILL from the page. The others keep serving');
    expect(isRunning(killedPid)).toBe(false);
    const seen = await eventually(
      async () => (await (await fetch(`${one!.url}/live/instances`)).json()) as Array<{ instance: string; state: string; reason: string }>,
      (list) => list.some((entry) => entry.instance === 'two' && entry.state === 'gone'),
    );
    expect(seen.find((entry) => entry.instance === 'two')).toMatchObject({ state: 'gone', reason: 'killed by SIGKILL from the page' });
    expect((await fetch(`${one!.url}/resources/a`)).status).toBe(200);
    await launcher.waitForOutput('demo: two is back on', 20_000);
    expect((await fetch(`${two!.url}/resources/d`)).status).toBe(200);
    expect((await launcher.view()).instances.find((instance) => instance.name === 'two')!.pid).not.toBe(killedPid);

    await expectStopsCleanly(launcher, 'SIGTERM');
  }, 60_000);

  it('DEMO_INSTANCES=2 with one instance frozen: SIGHUP (the terminal closing) stops everything and leaves nothing', async () => {
    const launcher = await Launcher.start([], { DEMO_INSTANCES: '2' }, 2);
    launchers.push(launcher);
    const view = await launcher.view();
    expect(view.instances.map((instance) => instance.name)).toEqual(['one', 'two']);
    const frozen = await fetch(`${launcher.controlUrl}/instances/two/freeze`, { method: 'POST', headers: { 'X-Demo-Token': TOKEN } });
    expect(frozen.status).toBe(200);
    await expectStopsCleanly(launcher, 'SIGHUP');
  }, 60_000);

  it('--instances 1: Ctrl-C (SIGINT) stops everything and leaves nothing', async () => {
    const launcher = await Launcher.start(['--instances', '1'], {}, 1);
    launchers.push(launcher);
    expect((await launcher.view()).instances.map((instance) => instance.name)).toEqual(['one']);
    await expectStopsCleanly(launcher, 'SIGINT');
  }, 60_000);
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port with `count` free ports from it on. */
async function consecutiveFreePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const free = await Promise.all(Array.from({ length: count }, (_, index) => portIsFree(base + index)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

async function eventually<T>(probe: () => Promise<T>, done: (result: T) => boolean, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await probe();
    if (done(result) || Date.now() > deadline) return result;
    await sleep(20);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
