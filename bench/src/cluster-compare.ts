// `node bench/dist/bench/src/cluster-compare.js` (after `npm run build` and `tsc -p bench/tsconfig.json`):
// scatter-gather latency and throughput on one redis-server and on a 3-master Redis Cluster (sharded
// pub/sub), same instances, same caller, same machine, one after the other. Writes bench/CLUSTER.md.
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BufferClient, type BufferOptions } from 'nestjs-redis-buffer';
import { startInstances, stopAll } from '../../test/support/instances.js';
import { startCluster } from '../../test/support/redis-cluster.js';
import { startRedis } from '../../test/support/redis-server.js';

const here = dirname(fileURLToPath(import.meta.url));
// Compiled to bench/dist/bench/src (rootDir is the repository, to share test/support).
const benchDir = join(here, '..', '..', '..');
const INSTANCE_APP = join(benchDir, '..', 'test', 'fixtures', 'dist', 'instance-app.js');
const INSTANCES = Number(process.env.INSTANCES ?? 4);
const LATENCY_MS = Number(process.env.LATENCY_MS ?? 3000);
const LOAD_MS = Number(process.env.LOAD_MS ?? 5000);
const IN_FLIGHT = Number(process.env.IN_FLIGHT ?? 64);

interface Figures {
  deployment: string;
  latency: { count: number; p50: number; p99: number };
  throughput: { perSecond: number; errors: number };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

async function measure(deployment: string, connection: Pick<BufferOptions, 'redis' | 'cluster'>): Promise<Figures> {
  const instances = await startInstances(Array.from({ length: INSTANCES }, (_, i) => ({ instanceId: `b${i}`, connection, namespace: 'bench', script: INSTANCE_APP })));
  const client = new BufferClient({ ...connection, namespace: 'bench', timeout: 5000 });
  try {
    await client.connect();
    await client.instances();
    const check = async (): Promise<void> => {
      const result = await client.gather('whoami', null);
      if (result.completedBy !== 'all' || result.replies.length !== INSTANCES) throw new Error(`${deployment}: incomplete answer ${JSON.stringify(result)}`);
    };
    for (let i = 0; i < 200; i++) await check(); // warm-up
    const latencies: number[] = [];
    for (const end = Date.now() + LATENCY_MS; Date.now() < end; ) {
      const started = performance.now();
      await check();
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    let done = 0;
    let errors = 0;
    const end = Date.now() + LOAD_MS;
    const startedAt = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (Date.now() < end) {
          try {
            await check();
            done++;
          } catch {
            errors++;
          }
        }
      }),
    );
    const seconds = (performance.now() - startedAt) / 1000;
    return {
      deployment,
      latency: { count: latencies.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
      throughput: { perSecond: done / seconds, errors },
    };
  } finally {
    await client.close();
    await stopAll(instances);
  }
}

const results: Figures[] = [];
const single = await startRedis([], { allowExternal: false });
try {
  results.push(await measure('one redis-server', { redis: single.url }));
} finally {
  await single.stop();
}
const cluster = await startCluster({ masters: 3 });
try {
  results.push(await measure('Redis Cluster, 3 masters (sharded pub/sub)', { cluster: { nodes: cluster.startupNodes.map((n) => ({ ...n })) } }));
} finally {
  await cluster.stop();
}

const lines = [
  '# Scatter-gather on one Redis server and on a 3-master Redis Cluster',
  '',
  `\`node bench/dist/bench/src/cluster-compare.js\`, ${new Date().toISOString().slice(0, 16)}Z, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), redis-server and instances on the same machine.`,
  `${INSTANCES} instances (test/fixtures/instance-app.ts, one process each) answer \`whoami\`; one in-process \`BufferClient\` asks all of them and checks every answer is whole.`,
  `Latency: one request at a time for ${LATENCY_MS} ms. Throughput: ${IN_FLIGHT} requests in flight for ${LOAD_MS} ms.`,
  '',
  '| deployment | latency p50 | latency p99 | requests (latency run) | throughput | errors |',
  '|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.deployment} | ${r.latency.p50.toFixed(2)} ms | ${r.latency.p99.toFixed(2)} ms | ${r.latency.count} | ${Math.round(r.throughput.perSecond)} req/s | ${r.throughput.errors} |`),
  '',
];
writeFileSync(join(benchDir, 'CLUSTER.md'), lines.join('\n'));
process.stdout.write(lines.join('\n'));
