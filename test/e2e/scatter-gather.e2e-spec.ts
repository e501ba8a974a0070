import { BufferClient, ConnectionLostError } from 'nestjs-redis-buffer';
import { execFile } from 'node:child_process';
import { freePort } from '../support/redis-server.js';
import { singleServerTarget } from '../support/redis-target.js';
import { describeScatterGather } from './scatter-gather.suite.js';
import { quietLogs } from '../support/captured-logs.js';

describeScatterGather('one Redis server', singleServerTarget);

describe('without Redis', () => {
  const logs = quietLogs([/^Redis: connect ECONNREFUSED/]);

  it('a request fails with ConnectionLostError within its timeout', async () => {
    const port = await freePort();
    const client = new BufferClient({ redis: `redis://127.0.0.1:${port}`, connectTimeout: 400, timeout: 1000 });
    try {
      const started = Date.now();
      const error = await client.gather('whoami', null).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionLostError);
      expect((error as ConnectionLostError).code).toBe('BUFFER_CONNECTION_LOST');
      expect(Date.now() - started).toBeLessThan(1500);
      expect(logs.warnings().some((message) => message.startsWith(`Redis: connect ECONNREFUSED 127.0.0.1:${port}`))).toBe(true);
    } finally {
      await client.close();
    }
  });
});

describe('closing', () => {
  it('a closed client does not keep the process alive, even after failed connection attempts', async () => {
    // Regression: ioredis's disconnect timer (2 s) outlived close() when the socket had been refused.
    const port = await freePort();
    const script = `
      import { BufferClient } from 'nestjs-redis-buffer';
      const client = new BufferClient({ redis: 'redis://127.0.0.1:${port}', connectTimeout: 300, timeout: 600 });
      await client.gather('x', null).catch(() => undefined);
      await client.close();
      console.log('CLOSED ' + Date.now());`;
    const exitedAt = await new Promise<{ closedAt: number; exitedAt: number }>((resolve, reject) => {
      const child = execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd() }, (error, stdout) => {
        if (error) return reject(error);
        const closedAt = Number(/CLOSED (\d+)/.exec(stdout)?.[1]);
        resolve({ closedAt, exitedAt: Date.now() });
      });
      child.stdin?.end();
    });
    expect(Number.isFinite(exitedAt.closedAt)).toBe(true);
    expect(exitedAt.exitedAt - exitedAt.closedAt).toBeLessThan(1500);
  });
});
