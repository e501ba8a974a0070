// Durable messaging benchmark: publish-to-handled latency and throughput of `buffer.durable.publish`
// → `@DurablePattern`, beside the pub/sub paths of the same library (`emit` → `@BufferedEvent`, and
// `send` → `@BufferedPattern` → reply) on the same machine in the same run. The handlers run in
// another process (one Nest app hosting N transports, as the main benchmark does); each handler
// tells the caller it ran with one PUBLISH on a plain connection, so "handled" means the handler
// ran (for durable: before its acknowledgement).
//
// `npm run bench:durable` (add `-- --quick` for short runs). Writes its section of bench/RESULTS.md
// between the durable markers, which the main report keeps.
import 'reflect-metadata';
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Payload } from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { BufferClient, BufferedEvent, BufferedPattern, DurablePattern, RedisBufferTransport } from 'nestjs-redis-buffer';
import { lastValueFrom } from 'rxjs';
import { startRedis } from '../../test/support/redis-server.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const LATENCY_MS = quick ? 1000 : 3000;
const WARMUP_MS = 500;
const LOAD_MS = quick ? 1500 : 3000;
const IN_FLIGHT = 64;
const DATA = { resource: 'res-1042', fields: ['owner', 'version'] };
const DONE_CHANNEL = (namespace: string): string => `${namespace}:bench-done`;

// ---- consumer role: a Nest app with N transports -------------------------------------------

async function consumer(): Promise<void> {
  const { REDIS_URL: redis, NAMESPACE: namespace, INSTANCES } = process.env as Record<string, string>;
  const notifier = new Redis(redis);
  const done = DONE_CHANNEL(namespace);

  @Controller()
  class BenchController {
    @DurablePattern('bench.durable', { group: 'bench' })
    async durable(@Payload() body: { seq: number }): Promise<void> {
      await notifier.publish(done, String(body.seq));
    }

    @BufferedEvent('bench.event')
    async event(@Payload() body: { seq: number }): Promise<void> {
      await notifier.publish(done, String(body.seq));
    }

    @BufferedPattern('bench.echo')
    echo(): unknown {
      return { found: false, owner: null, version: 0 };
    }
  }

  @Module({ controllers: [BenchController] })
  class BenchModule {}

  const apps: Array<{ close(): Promise<void> }> = [];
  for (let index = 0; index < Number(INSTANCES); index++) {
    const app = await NestFactory.create(BenchModule, { logger: ['error'] });
    app.connectMicroservice({ strategy: new RedisBufferTransport({ redis, namespace, instanceId: `bench-${process.pid}-${index}` }) }, { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.init();
    apps.push(app);
  }
  process.send?.('ready');
  process.on('message', async (message) => {
    if (message !== 'exit') return;
    await Promise.all(apps.map((app) => app.close()));
    notifier.disconnect();
    process.exit(0);
  });
}

// ---- caller role (this process) ---------------------------------------------------------------

type Path = 'durable' | 'event' | 'send';

interface Row {
  path: string;
  redis: string;
  instances: number;
  p50: number;
  p99: number;
  throughput: number;
  p50Loaded: number;
  p99Loaded: number;
  errors: number;
}

class Caller {
  private readonly waiting = new Map<number, () => void>();
  private seq = 0;
  private subscriber: Redis | undefined;
  errors = 0;

  constructor(
    readonly client: BufferClient,
    private readonly redisUrl: string,
    private readonly namespace: string,
  ) {}

  async start(): Promise<void> {
    await this.client.connect();
    this.subscriber = new Redis(this.redisUrl);
    this.subscriber.on('message', (_channel: string, message: string) => {
      const resolve = this.waiting.get(Number(message));
      this.waiting.delete(Number(message));
      resolve?.();
    });
    await this.subscriber.subscribe(DONE_CHANNEL(this.namespace));
  }

  /** One message through `path`, resolved when the handler reported it ran (or the reply arrived). */
  one(path: Path): Promise<void> {
    const seq = ++this.seq;
    if (path === 'send') return lastValueFrom(this.client.send('bench.echo', DATA)).then(() => undefined);
    const handled = new Promise<void>((resolve) => this.waiting.set(seq, resolve));
    const sent = path === 'durable' ? this.client.durable.publish('bench.durable', { seq, ...DATA }) : lastValueFrom(this.client.emit('bench.event', { seq, ...DATA }));
    return Promise.all([sent, handled]).then(() => undefined);
  }

  async latency(path: Path): Promise<{ p50: number; p99: number }> {
    const samples: number[] = [];
    const end = Date.now() + LATENCY_MS;
    while (Date.now() < end) {
      const start = process.hrtime.bigint();
      await this.one(path);
      samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    return percentiles(samples);
  }

  async load(path: Path): Promise<{ throughput: number; p50: number; p99: number }> {
    const samples: number[] = [];
    let completed = 0;
    let measuring = false;
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        const start = process.hrtime.bigint();
        try {
          await this.one(path);
          if (measuring) {
            completed++;
            samples.push(Number(process.hrtime.bigint() - start) / 1e6);
          }
        } catch {
          this.errors++;
        }
      }
    };
    const workers = [...Array(IN_FLIGHT).keys()].map(worker);
    await sleep(WARMUP_MS);
    measuring = true;
    const started = Date.now();
    await sleep(LOAD_MS);
    measuring = false;
    const elapsed = Date.now() - started;
    running = false;
    await Promise.all(workers);
    return { throughput: Math.round((completed / elapsed) * 1000), ...percentiles(samples) };
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect();
    await this.client.close();
  }
}

function percentiles(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: round(at(0.5)), p99: round(at(0.99)) };
}

const round = (value: number): number => Math.round(value * 1000) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function startConsumers(redisUrl: string, namespace: string, instances: number): Promise<ChildProcess> {
  const child = fork(fileURLToPath(import.meta.url), ['--role=consumer'], { env: { ...process.env, REDIS_URL: redisUrl, NAMESPACE: namespace, INSTANCES: String(instances) } });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`consumer process exited (${code})`)));
  });
  return child;
}

async function stopConsumers(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.send('exit');
  });
}

async function measure(label: string, path: Path, redisUrl: string, redisLabel: string, instances: number, run: number): Promise<Row> {
  const namespace = `bd${run}${path}${instances}`;
  const child = await startConsumers(redisUrl, namespace, instances);
  const caller = new Caller(new BufferClient({ redis: redisUrl, namespace, instanceId: `bench-caller-${process.pid}`, timeout: 30_000 }), redisUrl, namespace);
  try {
    await caller.start();
    const latency = await caller.latency(path);
    const load = await caller.load(path);
    const row: Row = { path: label, redis: redisLabel, instances, p50: latency.p50, p99: latency.p99, throughput: load.throughput, p50Loaded: load.p50, p99Loaded: load.p99, errors: caller.errors };
    process.stdout.write(`${JSON.stringify(row)}\n`);
    return row;
  } finally {
    await caller.close();
    await stopConsumers(child);
  }
}

async function main(): Promise<void> {
  const began = Date.now();
  const plain = await startRedis();
  // appendfsync always: what docs/reliability.md asks for when no acknowledged entry may be lost;
  // everysec, Redis's default, for comparison.
  const always = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
  const everysec = await startRedis(['--appendonly', 'yes', '--appendfsync', 'everysec']);
  const rows: Row[] = [];
  try {
    let run = 0;
    for (const instances of [1, 4]) {
      rows.push(await measure('durable: `durable.publish` → `@DurablePattern`', 'durable', plain.url, 'no persistence', instances, ++run));
      rows.push(await measure('durable: `durable.publish` → `@DurablePattern`', 'durable', everysec.url, 'appendonly, appendfsync everysec', instances, ++run));
      rows.push(await measure('durable: `durable.publish` → `@DurablePattern`', 'durable', always.url, 'appendonly, appendfsync always', instances, ++run));
    }
    rows.push(await measure('pub/sub: `emit` → `@BufferedEvent`', 'event', plain.url, 'no persistence', 1, ++run));
    rows.push(await measure('pub/sub: `send` → `@BufferedPattern` → reply', 'send', plain.url, 'no persistence', 1, ++run));
  } finally {
    await plain.stop();
    await always.stop();
    await everysec.stop();
  }
  writeSection(rows, Math.round((Date.now() - began) / 1000));
}

export const DURABLE_START = '<!-- durable:start -->';
export const DURABLE_END = '<!-- durable:end -->';

function writeSection(rows: readonly Row[], seconds: number): void {
  const file = join(here, '..', '..', '..', 'RESULTS.md');
  const lines = [
    DURABLE_START,
    '## Durable messaging beside pub/sub',
    '',
    `Written by \`npm run bench:durable${quick ? ' -- --quick' : ''}\` on ${new Date().toISOString()} (one repetition, ${seconds} s, same machine; a separate run from the tables above). Handlers run in another process (one Nest app hosting the instances); each tells the caller it ran with one PUBLISH, so a figure is publish → handler ran (for durable: before its acknowledgement). Latency: one in flight for ${LATENCY_MS} ms. Throughput: ${IN_FLIGHT} in flight, completions over ${LOAD_MS} ms after ${WARMUP_MS} ms warm-up. With several instances a durable entry goes to one of them (one group); an event goes to all, so pub/sub rows use one instance. One repetition on a shared 2-core machine: rows vary by up to a third between runs, the \`appendfsync always\` rows by up to a half (an fsync per write on a shared disk: 2,823 and 5,903/s for one instance in two runs ten minutes apart); compare orders of magnitude, not close figures.`,
    '',
    '| path | Redis | instances | p50 ms | p99 ms | handled/s @64 | p50 ms @64 | p99 ms @64 | errors |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((row) => `| ${row.path} | ${row.redis} | ${row.instances} | ${row.p50} | ${row.p99} | ${row.throughput.toLocaleString('en-US')} | ${row.p50Loaded} | ${row.p99Loaded} | ${row.errors} |`),
    '',
    'A durable entry costs the publish script (XADD, one round trip), its share of the read script (XREADGROUP, batched) and the acknowledgement script (one round trip); an entry with a key or an idempotency key also the start script (ordering and idempotency checks): against no Redis command on the consumer for an event, which explains most of the gap. With `appendfsync always` each write waits for an fsync. `maxInFlight` (32 by default) bounds how many entries one instance runs at once.',
    DURABLE_END,
  ];
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const start = current.indexOf(DURABLE_START);
  const end = current.indexOf(DURABLE_END);
  const section = lines.join('\n');
  const next = start >= 0 && end > start ? current.slice(0, start) + section + current.slice(end + DURABLE_END.length) : `${current.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, next);
  process.stdout.write(`wrote the durable section of ${file}\n`);
}

if (process.argv.includes('--role=consumer')) {
  void consumer();
} else {
  main().catch((error: unknown) => {
    process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
    process.exit(1);
  });
}
