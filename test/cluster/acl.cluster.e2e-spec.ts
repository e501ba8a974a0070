// Redis Cluster with ACL users (set on every node): the README's least-privilege rules for a cluster
// instance and caller work, a user cannot list another namespace's sharded channels, and taking away
// any one permission fails start-up at once with a RedisPermissionError naming it.
import { Caller, RedisPermissionError, Responder, type BufferLogger, type BufferOptions } from 'nestjs-redis-buffer';
import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import { startCluster, type TestCluster } from '../support/redis-cluster.js';

const NS = 'cperm';
const INSTANCE_RULE = ['+spublish', '+ssubscribe', '+sunsubscribe', '+pubsub|shardnumsub', '+ping', '+cluster|slots', '+cluster|info'];
const CALLER_RULE = ['+spublish', '+ssubscribe', '+ping', '+cluster|slots', '+cluster|info'];
const COMMAND_OF: Record<string, string> = {
  '+spublish': 'SPUBLISH',
  '+ssubscribe': 'SSUBSCRIBE',
  '+sunsubscribe': 'SUNSUBSCRIBE',
  '+pubsub|shardnumsub': 'PUBSUB SHARDNUMSUB',
  '+ping': 'PING',
  '+cluster|slots': 'CLUSTER SLOTS',
  '+cluster|info': 'CLUSTER INFO',
};
const CONNECT_TIMEOUT = 8000;
const AT_ONCE_MS = 2000;

const quiet: BufferLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };

describe('Redis Cluster ACL: least privilege, and every missing permission named at start-up', () => {
  let cluster: TestCluster;
  let users = 0;

  /** The same ACL user on every node; the options that connect as it. */
  async function user(commands: readonly string[], channels: readonly string[] = [`&${NS}:*`]): Promise<Pick<BufferOptions, 'cluster'>> {
    const name = `user${++users}`;
    await Promise.all(cluster.nodes.map((node) => cluster.exec(node.port, 'ACL', 'SETUSER', name, 'on', '>pw', 'resetchannels', ...channels, '-@all', ...commands)));
    return { cluster: { nodes: cluster.startupNodes.slice(0, 1), options: { redisOptions: { username: name, password: 'pw' } } } };
  }

  beforeAll(async () => {
    cluster = await startCluster({ masters: 3 });
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('with exactly the documented cluster rules an instance and a caller work, and the user cannot list sharded channels', async () => {
    const warn = jest.spyOn(console, 'warn');
    const responder = new Responder({ ...(await user(INSTANCE_RULE)), namespace: NS, instanceId: 'c-least' }, { logger: quiet }).handle('echo', (data) => data);
    const callerTarget = await user(CALLER_RULE);
    const caller = new Caller({ ...callerTarget, namespace: NS, timeout: 3000 }, { logger: quiet });
    try {
      await responder.listen();
      const result = await caller.gather<number>('echo', 5);
      expect(result.completedBy).toBe('all');
      expect(result.replies.map((reply) => [reply.instanceId, reply.data])).toEqual([['c-least', 5]]);
      await responder.close();
      // Drained by unsubscribing (SUNSUBSCRIBE) first: nobody holds the request channel now.
      const channel = `${NS}:req:echo`;
      const owner = await cluster.masterOf(await cluster.slotOf(channel));
      expect(await cluster.exec(owner, 'PUBSUB', 'SHARDNUMSUB', channel)).toEqual([channel, 0]);
      // The caller's user, on the node that held the channel: no listing of anyone's channels.
      const raw = new Redis({ port: owner, host: '127.0.0.1', username: `user${users}`, password: 'pw', enableReadyCheck: false, maxRetriesPerRequest: 0 });
      try {
        await expect(raw.call('PUBSUB', 'SHARDCHANNELS')).rejects.toThrow(/NOPERM/);
        await expect(raw.call('PUBSUB', 'CHANNELS')).rejects.toThrow(/NOPERM/);
        await expect(raw.call('SSUBSCRIBE', 'other:req:echo')).rejects.toThrow(/NOPERM/);
      } finally {
        raw.disconnect();
      }
      // ioredis's INFO ready check would print "Skipping the ready check" for these users.
      expect(warn.mock.calls.flat().join('\n')).not.toMatch(/ready check|NOPERM/);
    } finally {
      warn.mockRestore();
      await responder.close();
      await caller.close();
    }
  }, 60_000);

  describe.each(INSTANCE_RULE)('an instance without %s', (missing) => {
    it('fails listen() at once with RedisPermissionError naming the command and the rule to add', async () => {
      const target = await user(INSTANCE_RULE.filter((rule) => rule !== missing));
      const responder = new Responder({ ...target, namespace: NS, instanceId: 'c-half', connectTimeout: CONNECT_TIMEOUT }, { logger: quiet }).handle('echo', (data) => data);
      const started = Date.now();
      const error = await responder.listen().catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      try {
        expect(error).toBeInstanceOf(RedisPermissionError);
        expect((error as RedisPermissionError).command).toBe(COMMAND_OF[missing]);
        expect((error as RedisPermissionError).aclRule).toBe(missing);
        expect((error as Error).message).toContain(`ACL SETUSER <user> ${missing}`);
        expect(elapsed).toBeLessThan(AT_ONCE_MS);
        const channel = `${NS}:req:echo`;
        const owner = await cluster.masterOf(await cluster.slotOf(channel));
        expect(await cluster.exec(owner, 'PUBSUB', 'SHARDNUMSUB', channel)).toEqual([channel, 0]);
      } finally {
        await responder.close();
      }
    }, 30_000);
  });

  describe.each(CALLER_RULE)('a caller without %s', (missing) => {
    it('fails connect() at once with RedisPermissionError naming the command and the rule to add', async () => {
      const caller = new Caller({ ...(await user(CALLER_RULE.filter((rule) => rule !== missing))), namespace: NS, connectTimeout: CONNECT_TIMEOUT }, { logger: quiet });
      try {
        const started = Date.now();
        const error = await caller.connect().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(RedisPermissionError);
        expect((error as RedisPermissionError).command).toBe(COMMAND_OF[missing]);
        expect((error as RedisPermissionError).aclRule).toBe(missing);
        expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
      } finally {
        await caller.close();
      }
    }, 30_000);
  });
});
