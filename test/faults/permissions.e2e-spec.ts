// Fault suite, Redis ACL: the least-privilege rules the README gives for instances and callers work
// (each with a real ACL user on the test's own redis-server), a user of one namespace cannot list or
// use another's channels, and taking away any one permission fails start-up at once with a
// RedisPermissionError that names the command (or channel) and the rule to add, before anything is
// subscribed.
import { Caller, NoRespondersError, RedisPermissionError, Responder, type BufferLogger } from 'nestjs-redis-buffer';
import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import { rawRedis } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';

const NS = 'perm';
/** The rules docs and README give (after `resetchannels &perm:* -@all`). */
const INSTANCE_RULE = ['+publish', '+subscribe', '+unsubscribe', '+pubsub|numsub', '+ping'];
const CALLER_RULE = ['+publish', '+subscribe', '+ping'];
/** The command each rule allows, as the error names it. */
const COMMAND_OF: Record<string, string> = { '+publish': 'PUBLISH', '+subscribe': 'SUBSCRIBE', '+unsubscribe': 'UNSUBSCRIBE', '+pubsub|numsub': 'PUBSUB NUMSUB', '+ping': 'PING' };
/** Generous for a refusal that comes at once, far below connectTimeout. */
const CONNECT_TIMEOUT = 8000;
const AT_ONCE_MS = 1500;

function memoryLogger(): BufferLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, log: (m) => lines.push(m), warn: (m) => lines.push(`WARN ${m}`), error: (m) => lines.push(`ERROR ${m}`) };
}

describe('Redis ACL: least privilege, and every missing permission named at start-up', () => {
  let redis: TestRedis;
  let admin: Redis;
  let users = 0;

  /** A fresh ACL user with `commands` on `channels` (and nothing else); its URL. */
  async function user(commands: readonly string[], channels: readonly string[] = [`&${NS}:*`]): Promise<string> {
    const name = `user${++users}`;
    await admin.call('ACL', 'SETUSER', name, 'on', '>pw', 'resetchannels', ...channels, '-@all', ...commands);
    return `redis://${name}:pw@127.0.0.1:${redis.port}`;
  }

  const subscribers = async (...channels: string[]): Promise<number> => {
    const answer = (await admin.call('PUBSUB', 'NUMSUB', ...channels)) as Array<string | number>;
    return answer.filter((_, index) => index % 2 === 1).reduce<number>((sum, count) => sum + Number(count), 0);
  };

  beforeAll(async () => {
    redis = await startRedis(['--requirepass', 'admin-pw']);
    admin = rawRedis(`redis://:admin-pw@127.0.0.1:${redis.port}`);
  });

  afterAll(async () => {
    await admin?.quit();
    await redis?.stop();
  });

  it('with exactly the documented rules an instance and a caller work (gather, send, emit, instances, drain), and ioredis prints nothing', async () => {
    const warn = jest.spyOn(console, 'warn');
    const instanceLog = memoryLogger();
    const callerLog = memoryLogger();
    const events: unknown[] = [];
    const responder = new Responder({ redis: await user(INSTANCE_RULE), namespace: NS, instanceId: 'least-1' }, { logger: instanceLog })
      .handle('echo', (data) => data)
      .onEvent('note', (data) => void events.push(data));
    const caller = new Caller({ redis: await user(CALLER_RULE), namespace: NS, timeout: 3000 }, { logger: callerLog });
    try {
      await responder.listen();
      const result = await caller.gather<number>('echo', 7);
      expect(result.completedBy).toBe('all');
      expect(result.expected).toBe(1);
      expect(result.replies.map((reply) => [reply.instanceId, reply.data])).toEqual([['least-1', 7]]);
      expect((await caller.instances()).map((instance) => instance.instanceId)).toEqual(['least-1']);
      expect(await caller.emit('note', 'hello')).toBe(1);
      for (let deadline = Date.now() + 2000; events.length === 0 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(events).toEqual(['hello']);
      // Shutdown drains by unsubscribing first (UNSUBSCRIBE): afterwards nobody is counted.
      await responder.close();
      expect(await subscribers(`${NS}:req:echo`, `${NS}:direct:least-1`)).toBe(0);
      await expect(caller.gather('echo', 1)).rejects.toBeInstanceOf(NoRespondersError);
      // ioredis's INFO ready check would print "Skipping the ready check" for a user without INFO.
      expect(warn.mock.calls.flat().join('\n')).not.toMatch(/ready check|NOPERM/);
      expect([...instanceLog.lines, ...callerLog.lines].filter((line) => /NOPERM|WARN|ERROR/.test(line))).toEqual([]);
    } finally {
      warn.mockRestore();
      await responder.close();
      await caller.close();
    }
  }, 20_000);

  it("a user confined to one namespace cannot list, read or write another namespace's channels", async () => {
    // Without ioredis's ready check, which runs INFO (refused to this user).
    const raw = new Redis(await user(INSTANCE_RULE), { enableReadyCheck: false, maxRetriesPerRequest: 1 });
    try {
      await expect(raw.call('PUBSUB', 'CHANNELS')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('PUBSUB', 'CHANNELS', 'other:*')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('PUBSUB', 'SHARDCHANNELS')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('PSUBSCRIBE', '*')).rejects.toThrow(/NOPERM/);
      await expect(raw.publish('other:req:echo', 'x')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('INFO')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('CLIENT', 'LIST')).rejects.toThrow(/NOPERM/);
      await expect(raw.call('KEYS', '*')).rejects.toThrow(/NOPERM/);
      expect(await raw.publish(`${NS}:probe`, 'x')).toBe(0);
      // What stays visible, as the README says: the subscriber count of a channel name one already knows.
      expect(await raw.call('PUBSUB', 'NUMSUB', 'other:req:echo')).toEqual(['other:req:echo', 0]);
    } finally {
      raw.disconnect();
    }
  });

  describe.each(INSTANCE_RULE)('an instance without %s', (missing) => {
    it('fails listen() at once with RedisPermissionError naming the command and the rule to add, and subscribes nothing', async () => {
      const url = await user(INSTANCE_RULE.filter((rule) => rule !== missing));
      const responder = new Responder({ redis: url, namespace: NS, instanceId: 'half', connectTimeout: CONNECT_TIMEOUT }, { logger: memoryLogger() }).handle('echo', (data) => data);
      const started = Date.now();
      const error = await responder.listen().catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      try {
        expect(error).toBeInstanceOf(RedisPermissionError);
        const refused = error as RedisPermissionError;
        expect(refused.code).toBe('BUFFER_REDIS_PERMISSION');
        expect(refused.command).toBe(COMMAND_OF[missing]);
        expect(refused.aclRule).toBe(missing);
        expect(refused.channelRefused).toBe(false);
        expect(refused.message).toContain(`ACL SETUSER <user> ${missing}`);
        expect(elapsed).toBeLessThan(AT_ONCE_MS);
        // Not counted as a receiver by anyone: no request, direct or who channel is held.
        expect(await subscribers(`${NS}:req:echo`, `${NS}:direct:half`, `${NS}:who`)).toBe(0);
        expect(responder.connectionStatus).not.toBe('connected');
      } finally {
        await responder.close();
      }
    }, 15_000);
  });

  describe.each(CALLER_RULE)('a caller without %s', (missing) => {
    it('fails connect() and its requests at once with RedisPermissionError naming the command and the rule to add', async () => {
      const url = await user(CALLER_RULE.filter((rule) => rule !== missing));
      const caller = new Caller({ redis: url, namespace: NS, connectTimeout: CONNECT_TIMEOUT, timeout: CONNECT_TIMEOUT }, { logger: memoryLogger() });
      try {
        const started = Date.now();
        const error = await caller.connect().catch((e: unknown) => e);
        expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
        expect(error).toBeInstanceOf(RedisPermissionError);
        expect((error as RedisPermissionError).command).toBe(COMMAND_OF[missing]);
        expect((error as RedisPermissionError).aclRule).toBe(missing);
        // Not a subscriber either: its inbox is not held.
        const inboxes = (await admin.call('PUBSUB', 'CHANNELS', `${NS}:inbox:*`)) as string[];
        expect(inboxes).toEqual([]);
        const request = Date.now();
        const again = await caller.gather('echo', 1).catch((e: unknown) => e);
        expect(again).toBeInstanceOf(RedisPermissionError);
        expect(Date.now() - request).toBeLessThan(AT_ONCE_MS);
      } finally {
        await caller.close();
      }
    }, 15_000);
  });

  it.each([
    ['an instance', INSTANCE_RULE],
    ['a caller', CALLER_RULE],
  ])("%s configured for a namespace its user was not granted fails at once, naming the channel and the namespace's rule", async (who, rule) => {
    const url = await user(rule, ['&elsewhere:*']);
    const process = who === 'a caller' ? new Caller({ redis: url, namespace: NS, connectTimeout: CONNECT_TIMEOUT }, { logger: memoryLogger() }) : new Responder({ redis: url, namespace: NS, instanceId: 'lost', connectTimeout: CONNECT_TIMEOUT }, { logger: memoryLogger() }).handle('echo', (data) => data);
    const started = Date.now();
    const error = await (process instanceof Caller ? process.connect() : process.listen()).catch((e: unknown) => e);
    try {
      expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
      expect(error).toBeInstanceOf(RedisPermissionError);
      const refused = error as RedisPermissionError;
      expect(refused.command).toBe('PUBLISH');
      expect(refused.channels).toEqual([`${NS}:probe`]);
      expect(refused.channelRefused).toBe(true);
      expect(refused.aclRule).toBe(`&${NS}:*`);
      expect(refused.message).toContain(`ACL SETUSER <user> &${NS}:*`);
    } finally {
      await process.close();
    }
  }, 15_000);
});
