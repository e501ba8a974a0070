#!/usr/bin/env node
// The one-command demo: a redis-server on a free loopback port (unless REDIS_URL is set), then three
// instances of the resource service on ports 3001 to 3003, each holding different resources.
// Ctrl-C (SIGINT) or SIGTERM stops the instances, then Redis, and exits 0.
//
// Plain JavaScript so that it runs straight from `npm run demo` after the build, with nothing else.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = join(here, '..', 'dist', 'main.js');
const BASE_PORT = Number(process.env.DEMO_PORT ?? 3001);
const NAMESPACE = process.env.NAMESPACE ?? 'resource-demo';
const INSTANCES = [
  { name: 'one', resources: ['a', 'b', 'c'] },
  { name: 'two', resources: ['d', 'e'] },
  { name: 'three', resources: ['f', 'g', 'h', 'i'] },
].map((instance, index) => ({ ...instance, port: BASE_PORT + index }));

/** Every child process started here, so that nothing outlives the demo. */
const children = new Set();
let redisDir;
let stopping = false;

function log(message) {
  process.stdout.write(`${message}\n`);
}

function fail(message) {
  process.stderr.write(`demo: ${message}\n`);
  return shutdown(1);
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

/**
 * Starts a child in its own process group: the terminal's Ctrl-C then reaches this launcher only,
 * which stops the children in order (instances first, Redis last).
 */
function start(label, command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.label = label;
  children.add(child);
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (!stopping) fail(`${label} exited unexpectedly (${code ?? signal}).`);
  });
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
  redisDir = mkdtempSync(join(tmpdir(), 'resource-demo-redis-'));
  const child = start('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir], {});
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk.toString()));
  await Promise.race([
    waitForPort(port, 10_000),
    new Promise((_, reject) =>
      child.once('error', (error) => reject(new Error(`could not start redis-server (${error.message}). Install it (apt-get install redis-server) or set REDIS_URL.`))),
    ),
  ]).catch((error) => Promise.reject(new Error(`${error.message}\n${stderr}`)));
  log(`Started redis-server on 127.0.0.1:${port} (pid ${child.pid}).`);
  return `redis://127.0.0.1:${port}`;
}

function startInstance(instance, redisUrl) {
  const url = `http://localhost:${instance.port}`;
  const child = start(instance.name, process.execPath, [MAIN], {
    INSTANCE_NAME: instance.name,
    RESOURCES: instance.resources.join(','),
    PORT: String(instance.port),
    HOST: '127.0.0.1',
    PUBLIC_URL: url,
    REDIS_URL: redisUrl,
    NAMESPACE,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`instance ${instance.name} not ready after 20 s`)), 20_000);
    relay(child, (line) => {
      if (line.startsWith(`READY ${instance.name} `)) {
        clearTimeout(timer);
        resolve(url);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`instance ${instance.name} exited before it was ready`));
    });
  });
}

function stopChild(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  const running = [...children];
  const instances = running.filter((child) => child.label !== 'redis');
  if (running.length > 0) log(`\nStopping ${instances.length} instances${running.length > instances.length ? ' and redis-server' : ''}…`);
  await Promise.all(instances.map((child) => stopChild(child, 10_000)));
  await Promise.all(running.filter((child) => child.label === 'redis').map((child) => stopChild(child, 5_000)));
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
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
  // and a second default-handled signal would kill the launcher halfway through stopping.
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGTERM', () => shutdown(0));
  // A last resort if the launcher dies some other way: no orphaned instances or Redis.
  process.once('exit', () => {
    for (const child of children) child.kill('SIGKILL');
  });

  if (!existsSync(MAIN)) return fail(`${MAIN} is missing: run "npm run build" first (npm run demo does it for you).`);
  for (const instance of INSTANCES) {
    if (!(await portIsFree(instance.port))) {
      return fail(`port ${instance.port} is taken. Stop what uses it, or pick other ports with DEMO_PORT=4001 npm run demo.`);
    }
  }
  const redisUrl = await startRedis();
  const urls = await Promise.all(INSTANCES.map((instance) => startInstance(instance, redisUrl)));
  const miss = await measureMiss(urls[0]);

  log('');
  log('The resource service is running as three instances:');
  INSTANCES.forEach((instance, index) => log(`  ${instance.name.padEnd(6)} ${urls[index]}   holds ${instance.resources.join(', ')}`));
  log('');
  log(`Open ${urls[0]}/ in a browser: live instances, a lookup box, the replies arriving one by one.`);
  log('');
  log('Try:');
  log(`  curl ${urls[0]}/resources/f                 # held by three, found from one`);
  log(`  curl -i ${urls[1]}/resources/nope           # 404 the moment every instance said no`);
  log(`  curl ${urls[2]}/resources/a/replies         # the whole gather: who answered what, how it ended`);
  log(`  curl -N ${urls[1]}/resources/a/stream       # Server-Sent Events, one per reply, then "done"`);
  log(`  curl ${urls[0]}/stats                       # figures from every instance, and the totals`);
  log(`  curl -X POST -H 'Content-Type: application/json' -d '{"colour":"blue"}' ${urls[1]}/resources/z`);
  log(`  curl -X DELETE ${urls[0]}/resources/a       # every instance drops its cached copy`);
  log('');
  log(`Checked: an unknown id answered ${miss}.`);
  log('Press Ctrl-C to stop everything.');
}

main().catch((error) => fail(error.message));
