// How many writes that Redis had acknowledged survive a SIGKILL of redis-server, by appendfsync
// policy: 8 clients INCR one counter as fast as they can, Redis is killed after 300-800 ms and
// restarted from its AOF, and the counter is compared with the number of acknowledged INCRs.
// `node bench/dist/bench/src/aof-probe.js [everysec|always] [rounds]` (after `tsc -p bench`).
// docs/reliability.md quotes its output.
import { Redis } from 'ioredis';
import { startRedis } from '../../test/support/redis-server.js';

const policy = process.argv[2] ?? 'everysec';
const rounds = Number(process.argv[3] ?? 5);

async function main(): Promise<void> {
  const redis = await startRedis(['--appendonly', 'yes', '--appendfsync', policy]);
  try {
    for (let round = 1; round <= rounds; round++) {
      const client = new Redis(redis.url, { maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, enableOfflineQueue: false });
      client.on('error', () => undefined);
      await new Promise((resolve) => client.once('ready', resolve));
      await client.del('probe');
      let acknowledged = 0;
      let stop = false;
      const writers = [...Array(8).keys()].map(async () => {
        while (!stop) {
          try {
            await client.incr('probe');
            acknowledged++;
          } catch {
            return;
          }
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 500));
      await redis.kill();
      stop = true;
      await Promise.all(writers);
      client.disconnect();
      await redis.restart();
      const reader = new Redis(redis.url);
      const value = Number(await reader.get('probe'));
      reader.disconnect();
      process.stdout.write(`${JSON.stringify({ policy, round, acknowledged, survived: value, lost: Math.max(0, acknowledged - value) })}\n`);
    }
  } finally {
    await redis.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
