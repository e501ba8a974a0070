// Sentinel with an ACL user (set on the master and the replica: ACLs are not replicated): the
// README's rules for one server plus +info (ioredis checks the master's role with INFO) work, and
// without +info start-up fails at once naming it.
import { jest } from '@jest/globals';
import { Caller, RedisPermissionError, Responder, type BufferLogger } from 'nestjs-redis-buffer';
import { startSentinelGroup, type TestSentinelGroup } from '../support/redis-sentinel.js';

const NS = 'sperm';
const INSTANCE_RULE = ['+publish', '+subscribe', '+unsubscribe', '+pubsub|numsub', '+ping', '+info'];
const CALLER_RULE = ['+publish', '+subscribe', '+ping', '+info'];
const quiet: BufferLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };

describe('Sentinel ACL: least privilege', () => {
  let group: TestSentinelGroup;
  let users = 0;

  async function user(commands: readonly string[]): Promise<{ redis: { sentinels: Array<{ host: string; port: number }>; name: string; username: string; password: string } }> {
    const name = `user${++users}`;
    await Promise.all(group.servers.map((server) => execOn(server.port, ['ACL', 'SETUSER', name, 'on', '>pw', 'resetchannels', `&${NS}:*`, '-@all', ...commands])));
    return { redis: { ...group.connection.redis, username: name, password: 'pw' } };
  }

  async function execOn(port: number, args: string[]): Promise<void> {
    const { Redis } = await import('ioredis');
    const admin = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    try {
      await admin.call(args[0]!, ...args.slice(1));
    } finally {
      admin.disconnect();
    }
  }

  beforeAll(async () => {
    group = await startSentinelGroup();
    await group.waitStable();
  }, 60_000);

  afterAll(async () => {
    await group?.stop();
  });

  it('with the one-server rules plus +info an instance and a caller work through Sentinel', async () => {
    const warn = jest.spyOn(console, 'warn');
    const responder = new Responder({ ...(await user(INSTANCE_RULE)), namespace: NS, instanceId: 's-least' }, { logger: quiet }).handle('echo', (data) => data);
    const caller = new Caller({ ...(await user(CALLER_RULE)), namespace: NS, timeout: 3000 }, { logger: quiet });
    try {
      await responder.listen();
      const result = await caller.gather<number>('echo', 3);
      expect(result.completedBy).toBe('all');
      expect(result.replies.map((reply) => [reply.instanceId, reply.data])).toEqual([['s-least', 3]]);
      expect(warn.mock.calls.flat().join('\n')).not.toMatch(/ready check|NOPERM/);
    } finally {
      warn.mockRestore();
      await responder.close();
      await caller.close();
    }
  }, 30_000);

  it.each([
    ['an instance', INSTANCE_RULE],
    ['a caller', CALLER_RULE],
  ])('%s without +info fails start-up at once with RedisPermissionError naming INFO', async (who, rule) => {
    // ioredis says on the console that it skips its role check: that warning is what this error replaces.
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const target = await user(rule.filter((command) => command !== '+info'));
    const process = who === 'a caller' ? new Caller({ ...target, namespace: NS, connectTimeout: 8000 }, { logger: quiet }) : new Responder({ ...target, namespace: NS, instanceId: 's-half', connectTimeout: 8000 }, { logger: quiet }).handle('echo', (data) => data);
    const started = Date.now();
    const error = await (process instanceof Caller ? process.connect() : process.listen()).catch((e: unknown) => e);
    try {
      expect(error).toBeInstanceOf(RedisPermissionError);
      expect((error as RedisPermissionError).command).toBe('INFO');
      expect((error as RedisPermissionError).aclRule).toBe('+info');
      expect(Date.now() - started).toBeLessThan(2000);
      expect(warn.mock.calls.flat().join('\n')).toMatch(/Skipping the ready check/);
    } finally {
      warn.mockRestore();
      await process.close();
    }
  }, 30_000);
});
