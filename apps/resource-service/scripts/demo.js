#!/usr/bin/env node
// The one-command demo: a redis-server on a free loopback port (unless REDIS_URL is set), then N
// instances of the resource service (three unless --instances N or DEMO_INSTANCES=N) on ports 3001
// and up, each holding different resources, and a small control endpoint on loopback through which
// the page freezes, thaws, kills and restarts instances.
//
// An instance that dies is reported on every page and restarted after DEMO_RESTART_MS (10 s;
// --no-restart to leave it down); the others keep serving. Ctrl-C (SIGINT), SIGTERM and SIGHUP
// (closing the terminal) stop the instances, then Redis, remove the temporary folder, and exit 0.
//
// Plain JavaScript so that it runs straight from `npm run demo` after the build, with nothing else.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = join(here, '..', 'dist', 'main.js');
const NAMES = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
/** The first three hold what the README's examples use; any further instance two letters each. */
const FIRST_RESOURCES = [['a', 'b', 'c'], ['d', 'e'], ['f', 'g', 'h', 'i']];
const NAMESPACE = process.env.NAMESPACE ?? 'resource-demo';

const USAGE = `Usage: npm run demo -- [--instances N] [--no-restart]

  --instances N   how many instances to run, 1 to ${NAMES.length} (default 3, or DEMO_INSTANCES)
  --no-restart    leave a dead instance down (default: restart it after DEMO_RESTART_MS, 10000)

Environment: DEMO_PORT (first instance's port, default 3001), REDIS_URL (use this Redis instead of
starting one), DEMO_CONTROL_PORT (the control endpoint's port, default a free one), NAMESPACE.`;

// The terminal may be gone (SIGHUP): writing to it must not crash the launcher before it has stopped
// everything.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);

function log(message) {
  process.stdout.write(`${message}\n`);
}

function settings() {
  const { values } = parseArgs({
    options: { instances: { type: 'string' }, 'no-restart': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    process.exit(0);
  }
  const count = Number(values.instances ?? process.env.DEMO_INSTANCES ?? 3);
  if (!Number.isInteger(count) || count < 1 || count > NAMES.length) throw new Error(`--instances must be an integer from 1 to ${NAMES.length} (got ${values.instances ?? process.env.DEMO_INSTANCES}).\n${USAGE}`);
  const restartMs = values['no-restart'] ? null : Number(process.env.DEMO_RESTART_MS ?? 10_000);
  if (restartMs !== null && (!Number.isInteger(restartMs) || restartMs < 0)) throw new Error(`DEMO_RESTART_MS must be a number of milliseconds (got ${process.env.DEMO_RESTART_MS}).`);
  const basePort = Number(process.env.DEMO_PORT ?? 3001);
  let letter = 'j'.charCodeAt(0);
  const instances = NAMES.slice(0, count).map((name, index) => {
    const resources = FIRST_RESOURCES[index] ?? [String.fromCharCode(letter++), String.fromCharCode(letter++)];
    return { name, resources, port: basePort + index };
  });
  return { instances, restartMs };
}

/** Resolves with a port nothing listens on, chosen by the kernel. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function portIsFree(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function waitForPort(port, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Everything the demo runs, so that nothing outlives it. */
const state = {
  stopping: false,
  /** @type {Set<import('node:child_process').ChildProcess>} */
  children: new Set(),
  redis: null,
  redisDir: null,
  /** The library's client, to tell every instance (and so every page) what the launcher did. */
  buffer: null,
  control: null,
  /** name -> slot: { name, resources, port, url, child, status, note, restartAt, restartTimer, failures } */
  slots: new Map(),
  restartMs: 10_000,
  redisUrl: null,
};

/**
 * Starts a child in its own process group: the terminal's Ctrl-C then reaches this launcher only,
 * which stops the children in order (instances first, Redis last).
 */
function spawnChild(label, command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.label = label;
  state.children.add(child);
  child.once('exit', () => state.children.delete(child));
  return child;
}

/** Prefixes each line a child prints with its name. */
function relay(child, onLine) {
  for (const [stream, target] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ]) {
    let pending = '';
    stream.on('data', (chunk) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        target.write(`[${child.label}] ${line}\n`);
        onLine?.(line);
      }
    });
  }
}

async function startRedis() {
  if (process.env.REDIS_URL) {
    log(`Using Redis at ${process.env.REDIS_URL} (REDIS_URL).`);
    return process.env.REDIS_URL;
  }
  const port = await freePort();
  state.redisDir = mkdtempSync(join(tmpdir(), 'resource-demo-redis-'));
  const child = spawnChild('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', state.redisDir], {});
  state.redis = child;
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk.toString()));
  child.once('exit', (code, signal) => {
    if (!state.stopping) fail(`redis-server exited unexpectedly (${signal ?? `code ${code}`}); nothing works without it.`);
  });
  await Promise.race([
    waitForPort(port, 10_000),
    new Promise((_, reject) =>
      child.once('error', (error) => reject(new Error(`could not start redis-server (${error.message}). Install it (apt-get install redis-server) or set REDIS_URL.`))),
    ),
  ]).catch((error) => Promise.reject(new Error(`${error.message}\n${stderr}`)));
  log(`Started redis-server on 127.0.0.1:${port} (pid ${child.pid}).`);
  return `redis://127.0.0.1:${port}`;
}

/** Tells every instance, and so every open page, what the launcher did or saw. Best effort. */
function announce(pattern, data) {
  state.buffer?.emit(pattern, data).subscribe({ error: () => undefined });
}

function setStatus(slot, status, action, note, restartAt) {
  slot.status = status;
  slot.note = note;
  slot.restartAt = restartAt ?? null;
  announce('demo.control', { instance: slot.name, action, note, ...(restartAt ? { restartAt } : {}) });
}

/** Starts one instance; resolves once it printed READY, rejects if it exits or hangs first. */
function startInstance(slot) {
  clearTimeout(slot.restartTimer);
  slot.restartTimer = undefined;
  const child = spawnChild(slot.name, process.execPath, [MAIN], {
    INSTANCE_NAME: slot.name,
    RESOURCES: slot.resources.join(','),
    PORT: String(slot.port),
    HOST: '127.0.0.1',
    PUBLIC_URL: slot.url,
    REDIS_URL: state.redisUrl,
    NAMESPACE,
    DEMO_CONTROL_URL: state.control.url,
    DEMO_CONTROL_TOKEN: state.control.token,
  });
  slot.child = child;
  setStatus(slot, 'starting', 'starting', 'starting');
  return new Promise((resolve, reject) => {
    let ready = false;
    const timer = setTimeout(() => reject(new Error(`instance ${slot.name} not ready after 20 s`)), 20_000);
    relay(child, (line) => {
      if (!ready && line.startsWith(`READY ${slot.name} `)) {
        ready = true;
        clearTimeout(timer);
        slot.failures = 0;
        setStatus(slot, 'running', 'started', `running (pid ${child.pid})`);
        resolve(slot.url);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`instance ${slot.name} exited (${signal ?? `code ${code}`}) before it was ready`));
      onInstanceExit(slot, child, code, signal, ready);
    });
  });
}

/** An instance ended: unless the demo is stopping, say so everywhere, and restart it after the delay. */
function onInstanceExit(slot, child, code, signal, wasReady) {
  if (state.stopping || slot.child !== child) return;
  slot.child = null;
  const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
  const reason = slot.killedFromPage ? `${how} from the page` : how;
  slot.killedFromPage = false;
  announce('instance.left', { instance: slot.name, reason });
  if (!wasReady) slot.failures = (slot.failures ?? 0) + 1;
  if (state.restartMs === null || slot.failures >= 3) {
    const why = slot.failures >= 3 ? 'it failed to start 3 times, so it stays down' : 'automatic restart is off (--no-restart)';
    setStatus(slot, 'exited', 'exited', `${reason}; ${why}. Restart it from the page.`);
    log(`demo: ${slot.name} ${reason}; ${why}. The others keep serving.`);
    return;
  }
  const restartAt = Date.now() + state.restartMs;
  setStatus(slot, 'exited', 'exited', reason, restartAt);
  log(`demo: ${slot.name} ${reason}. The others keep serving; restarting it in ${Math.round(state.restartMs / 1000)} s (or use Restart on the page).`);
  slot.restartTimer = setTimeout(() => restart(slot), state.restartMs);
}

function restart(slot) {
  if (state.stopping) return;
  startInstance(slot).then(
    () => log(`demo: ${slot.name} is back on ${slot.url}.`),
    (error) => log(`demo: ${error.message}`),
  );
}

/** SIGTERM, then SIGCONT (a frozen process keeps a pending SIGTERM until it runs again), SIGKILL after `timeoutMs`. */
function stopChild(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
    child.kill('SIGCONT');
  });
}

/** What the page's buttons do, by way of an instance's /demo routes. */
async function control(slot, action) {
  const child = slot.child;
  const running = child !== null && child !== undefined && child.exitCode === null && child.signalCode === null;
  switch (action) {
    case 'freeze':
      if (!running || slot.status === 'frozen') return [409, `${slot.name} is ${slot.status}; only a running instance can be frozen.`];
      child.kill('SIGSTOP');
      setStatus(slot, 'frozen', 'frozen', `frozen (SIGSTOP): the process is paused, its connections stay open (pid ${child.pid})`);
      return [200, `${slot.name} frozen.`];
    case 'thaw':
      if (!running || slot.status !== 'frozen') return [409, `${slot.name} is ${slot.status}, not frozen.`];
      child.kill('SIGCONT');
      setStatus(slot, 'running', 'thawed', `thawed (SIGCONT) (pid ${child.pid})`);
      return [200, `${slot.name} thawed.`];
    case 'kill':
      if (!running) return [409, `${slot.name} is not running.`];
      slot.killedFromPage = true;
      child.kill('SIGKILL');
      return [200, `${slot.name} killed (SIGKILL).`];
    case 'restart':
      if (running) {
        slot.child = null; // its exit is this restart, not news
        await stopChild(child, 10_000);
        announce('instance.left', { instance: slot.name, reason: 'restarted from the page' });
      }
      restart(slot);
      return [202, `${slot.name} is restarting.`];
    default:
      return [404, `unknown action ${action}`];
  }
}

function describe() {
  return {
    instances: [...state.slots.values()].map((slot) => ({
      name: slot.name,
      url: slot.url,
      port: slot.port,
      resources: slot.resources,
      status: slot.status,
      note: slot.note,
      pid: slot.child?.pid ?? null,
      restartAt: slot.restartAt,
    })),
    redis: state.redis ? { pid: state.redis.pid, url: state.redisUrl } : { pid: null, url: state.redisUrl },
    tempDir: state.redisDir,
  };
}

/** The control endpoint: loopback only, and only with the token the instances were given. */
async function startControl() {
  const token = process.env.DEMO_CONTROL_TOKEN || randomBytes(16).toString('hex');
  const server = createHttpServer((request, response) => {
    const reply = (status, body) => {
      response.writeHead(status, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    const remote = request.socket.remoteAddress;
    if (remote !== '127.0.0.1' && remote !== '::1' && remote !== '::ffff:127.0.0.1') return reply(403, { message: 'loopback only' });
    if (request.headers['x-demo-token'] !== token) return reply(403, { message: 'X-Demo-Token required' });
    const url = new URL(request.url, 'http://127.0.0.1');
    if (request.method === 'GET' && url.pathname === '/instances') return reply(200, describe());
    const match = /^\/instances\/([^/]+)\/(freeze|thaw|kill|restart)$/.exec(url.pathname);
    if (request.method !== 'POST' || match === null) return reply(404, { message: 'GET /instances, or POST /instances/:name/(freeze|thaw|kill|restart)' });
    const slot = state.slots.get(match[1]);
    if (slot === undefined) return reply(404, { message: `no instance named ${match[1]}` });
    if (state.stopping) return reply(503, { message: 'the demo is stopping' });
    control(slot, match[2]).then(
      ([status, message]) => reply(status, { message, instance: describe().instances.find((entry) => entry.name === slot.name) }),
      (error) => reply(500, { message: error.message }),
    );
  });
  const port = Number(process.env.DEMO_CONTROL_PORT ?? 0);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return { server, token, url: `http://127.0.0.1:${server.address().port}` };
}

function fail(message) {
  process.stderr.write(`demo: ${message}\n`);
  return shutdown(1);
}

async function shutdown(code) {
  if (state.stopping) return;
  state.stopping = true;
  for (const slot of state.slots.values()) clearTimeout(slot.restartTimer);
  state.control?.server.close();
  state.control?.server.closeAllConnections();
  const running = [...state.children];
  const instances = running.filter((child) => child !== state.redis);
  if (running.length > 0) log(`\nStopping ${instances.length} instance${instances.length === 1 ? '' : 's'}${state.redis && running.includes(state.redis) ? ' and redis-server' : ''}…`);
  await Promise.all(instances.map((child) => stopChild(child, 10_000)));
  await state.buffer?.close().catch(() => undefined);
  if (state.redis) await stopChild(state.redis, 5_000);
  if (state.redisDir) rmSync(state.redisDir, { recursive: true, force: true });
  log(code === 0 ? 'Stopped cleanly.' : 'Stopped.');
  process.exit(code);
}

/** Looks an unknown id up once, to show that a miss is answered at once, not at the timeout. */
async function measureMiss(url) {
  const startedAt = performance.now();
  const response = await fetch(`${url}/resources/no-such-resource`);
  const elapsedMs = performance.now() - startedAt;
  const body = await response.json();
  return `${response.status} in ${elapsedMs.toFixed(1)} ms over HTTP (gather completedBy "${body.completedBy}", ${body.expected} instances asked, ${body.elapsedMs} ms inside the buffer)`;
}

async function main() {
  // `on`, not `once`: Ctrl-C under npm delivers SIGINT twice (the terminal's, and npm forwarding it),
  // and a second default-handled signal would kill the launcher halfway through stopping. SIGHUP is
  // the terminal closing: the children are in their own process groups and would not hear it.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => shutdown(0));
  process.on('uncaughtException', (error) => fail(`unexpected error: ${error.stack ?? error}`));
  // A last resort if the launcher dies some other way: no orphaned instances or Redis, no temp folder.
  process.once('exit', () => {
    for (const child of state.children) {
      child.kill('SIGKILL');
      child.kill('SIGCONT');
    }
    if (state.redisDir) rmSync(state.redisDir, { recursive: true, force: true });
  });

  const { instances, restartMs } = settings();
  state.restartMs = restartMs;
  if (!existsSync(MAIN)) return fail(`${MAIN} is missing: run "npm run build" first (npm run demo does it for you).`);
  for (const instance of instances) {
    if (!(await portIsFree(instance.port))) {
      return fail(`port ${instance.port} is taken. Stop what uses it, or pick other ports with DEMO_PORT=4001 npm run demo.`);
    }
  }
  state.control = await startControl();
  state.redisUrl = await startRedis();
  const { BufferClient } = await import('nestjs-redis-buffer');
  state.buffer = new BufferClient({ redis: state.redisUrl, namespace: NAMESPACE, instanceId: `demo-launcher-${process.pid}` });
  await state.buffer.connect();
  for (const instance of instances) state.slots.set(instance.name, { ...instance, url: `http://localhost:${instance.port}`, child: null, status: 'starting', note: null, restartAt: null, failures: 0 });
  const urls = await Promise.all([...state.slots.values()].map((slot) => startInstance(slot)));
  const miss = await measureMiss(urls[0]);

  const count = instances.length;
  log('');
  log(`The resource service is running as ${count} instance${count === 1 ? '' : 's'}:`);
  for (const slot of state.slots.values()) log(`  ${slot.name.padEnd(6)} ${slot.url}   holds ${slot.resources.join(', ')}`);
  log('');
  log(`Open ${urls[0]}/ in a browser: live instances, a lookup box, the replies arriving one by one,`);
  log('and buttons to freeze, kill and restart instances. Open a second instance in another tab:');
  log('a change made on one appears on the other within a second.');
  log('');
  log('Try:');
  log(`  curl ${urls[0]}/resources/f                 # held by three, found from one`);
  log(`  curl -i ${urls[1 % count]}/resources/nope           # 404 the moment every instance said no`);
  log(`  curl ${urls[2 % count]}/resources/a/replies         # the whole gather: who answered what, how it ended`);
  log(`  curl -N ${urls[0]}/live                     # the live feed: every change, every instance arriving or leaving`);
  log(`  curl ${urls[0]}/stats                       # figures from every instance, and the totals`);
  log(`  curl -X POST -H 'Content-Type: application/json' -d '{"colour":"blue"}' ${urls[1 % count]}/resources/z`);
  log(`  curl -X DELETE ${urls[0]}/resources/z       # from any instance: it asks the owner`);
  log('');
  log(`Faults: the page's Freeze / Kill buttons, or kill -STOP / kill -9 an instance's pid yourself.`);
  log(
    restartMs === null
      ? 'A dead instance stays down until you restart it from the page.'
      : `A dead instance is restarted after ${Math.round(restartMs / 1000)} s (DEMO_RESTART_MS; --no-restart to keep it down).`,
  );
  log(`Demo control (loopback only): ${state.control.url}`);
  log(`Checked: an unknown id answered ${miss}.`);
  log('Press Ctrl-C to stop everything.');
}

main().catch((error) => fail(error.message));
