// A rolling restart during a Redis outage must not hang: SIGTERM ends each instance promptly even
// with Redis gone (ioredis would otherwise queue the shutdown's UNSUBSCRIBE until Redis is back).
import { startRedis } from '../support/redis-server.js';
import { startResourceServices, stopResourceServices } from '../support/resource-service.js';

describe('resource-service shutdown', () => {
  it('exits on SIGTERM within a couple of seconds while Redis is down', async () => {
    const redis = await startRedis();
    if (!redis.owned) return;
    try {
      const instances = await startResourceServices(redis.url, 'shutdown-redis-down');
      await redis.kill();
      // Let every instance notice: its connections are now reconnecting.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const startedAt = Date.now();
      const exitCodes = await stopResourceServices(instances);
      expect(exitCodes).toEqual([0, 0, 0]);
      expect(Date.now() - startedAt).toBeLessThan(3000);
    } finally {
      await redis.stop();
    }
  }, 60_000);
});
