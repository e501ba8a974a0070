import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { BUFFER_DEFAULTS, resolveBufferOptions, resolveCallOptions } from '../src/core/options.js';
import { resolveDurableHandlerOptions, resolveDurableOptions } from '../src/core/durable/durable-options.js';
import { DurablePublisher } from '../src/core/durable/durable-publisher.js';
import { Caller } from '../src/core/gather/caller.js';
import { Responder } from '../src/core/respond/responder.js';

describe('options', () => {
  it('fills every default from one place', () => {
    const resolved = resolveBufferOptions();
    expect(resolved).toMatchObject({ ...BUFFER_DEFAULTS, stall: undefined });
    expect(resolved.instanceId).toMatch(/-\d+-[0-9a-f]{8}$/);
  });

  it('takes a cluster as its nodes and ioredis Cluster options, and a Sentinel setup as ioredis options', () => {
    const nodes = [{ host: 'redis-1', port: 7000 }, 'redis-2:7000', 7002];
    expect(resolveBufferOptions({ cluster: { nodes } }).cluster).toEqual({ nodes, options: {} });
    expect(resolveBufferOptions({ cluster: { nodes, options: { slotsRefreshInterval: 500 } } }).cluster?.options).toEqual({ slotsRefreshInterval: 500 });
    expect(resolveBufferOptions().cluster).toBeUndefined();
    const sentinel = { sentinels: [{ host: 's1', port: 26379 }], name: 'mymaster' };
    expect(resolveBufferOptions({ redis: sentinel }).redis).toEqual(sentinel);
  });

  it('gives every object its own instance id unless one is set', () => {
    expect(resolveBufferOptions().instanceId).not.toBe(resolveBufferOptions().instanceId);
    expect(resolveBufferOptions({ instanceId: 'node-1' }).instanceId).toBe('node-1');
  });

  it.each([
    [{ redis: 'http://x' }, 'redis'],
    [{ namespace: 'a b' }, 'namespace'],
    [{ namespace: 'a:b' }, 'namespace'],
    [{ instanceId: '' }, 'instanceId'],
    [{ timeout: 0 }, 'timeout'],
    [{ timeout: Number.NaN }, 'timeout'],
    [{ maxPayloadBytes: 1.5 }, 'maxPayloadBytes'],
    [{ maxPayloadBytes: 1000, maxBatchBytes: 2000 }, 'maxBatchBytes'],
    [{ redis: { sentinels: [{ host: 'h', port: 26379 }] } }, 'redis'],
    [{ redis: { sentinels: [], name: 'mymaster' } }, 'redis'],
    [{ cluster: { nodes: [] } }, 'cluster'],
    [{ cluster: { nodes: [null] } }, 'cluster'],
    [{ cluster: [{ host: 'h', port: 7000 }] }, 'cluster'],
    [{ cluster: { nodes: [7000], options: 'fast' } }, 'cluster'],
    [{ cluster: { nodes: [7000] }, redis: 'redis://h:6379' }, 'cluster'],
  ])('rejects %j naming "%s"', (options, option) => {
    expect(() => resolveBufferOptions(options as never)).toThrow(InvalidOptionsError);
    try {
      resolveBufferOptions(options as never);
    } catch (error) {
      expect((error as InvalidOptionsError).option).toBe(option);
      expect((error as InvalidOptionsError).code).toBe('BUFFER_INVALID_OPTIONS');
    }
  });

  describe('per call', () => {
    const defaults = resolveBufferOptions({ timeout: 2000, stall: 100 });

    it('takes the module defaults', () => {
      expect(resolveCallOptions(defaults)).toMatchObject({ timeout: 2000, stall: 100, quorum: undefined, to: undefined });
    });

    it.each([
      [{ quorum: 0 }, 'quorum'],
      [{ until: 'yes' }, 'until'],
      [{ stall: 3000 }, 'stall'],
      [{ to: '' }, 'to'],
      [{ to: 'a', quorum: 2 }, 'quorum'],
      [{ headers: { a: 1 } }, 'headers'],
      [{ headers: JSON.parse('{"__proto__":"x"}') }, 'headers'],
    ])('rejects %j naming "%s"', (options, option) => {
      try {
        resolveCallOptions(defaults, options as never);
        throw new Error('accepted');
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidOptionsError);
        expect((error as InvalidOptionsError).option).toBe(option);
      }
    });
  });

  describe('unknown keys', () => {
    const rejects = (run: () => unknown, option: string, hint: RegExp): void => {
      let thrown: unknown;
      try {
        run();
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(InvalidOptionsError);
      expect((thrown as InvalidOptionsError).option).toBe(option);
      expect((thrown as Error).message).toMatch(hint);
    };

    it('throws for a misspelt module option, naming the nearest one', () => {
      rejects(() => resolveBufferOptions({ redsi: 'redis://127.0.0.1:6379' } as never), 'redsi', /did you mean "redis"\?/);
      rejects(() => resolveBufferOptions({ livenesTimeout: 500 } as never), 'livenesTimeout', /did you mean "livenessTimeout"\?/);
      rejects(() => resolveBufferOptions({ wholeNewThing: 1 } as never), 'wholeNewThing', /is not an option \(known: redis, cluster/);
    });

    it('throws for a misspelt call option, cluster, durable or durable handler option', () => {
      const defaults = resolveBufferOptions();
      rejects(() => resolveCallOptions(defaults, { timout: 100 } as never), 'timout', /did you mean "timeout"\?/);
      rejects(() => resolveBufferOptions({ cluster: { nodes: [7000], option: {} } as never }), 'cluster.option', /did you mean "cluster.options"\?/);
      rejects(() => resolveBufferOptions({ durable: { grup: 'g' } as never }), 'durable.grup', /did you mean "durable.group"\?/);
      rejects(() => resolveBufferOptions({ durable: { handlers: { job: { maxAttempt: 2 } as never } } }), 'durable.handlers.job.maxAttempt', /did you mean "durable.handlers.job.maxAttempts"\?/);
    });

    it('throws for a misspelt signing, liveness or durable header-filter option, naming the nearest one', () => {
      rejects(() => resolveBufferOptions({ signingKeys: 'k'.repeat(32) } as never), 'signingKeys', /did you mean "signingKey"\?/);
      rejects(() => resolveBufferOptions({ maxClockSkw: 5000 } as never), 'maxClockSkw', /did you mean "maxClockSkew"\?/);
      rejects(() => resolveBufferOptions({ replyToAnyChanel: true } as never), 'replyToAnyChanel', /did you mean "replyToAnyChannel"\?/);
      rejects(() => resolveBufferOptions({ durable: { handlers: { 'job.*': { header: { region: 'eu' } } as never } } }), 'durable.handlers.job.*.header', /did you mean "durable.handlers.job.\*.headers"\?/);
      rejects(() => resolveDurableHandlerOptions(resolveDurableOptions(), { header: { region: 'eu' } } as never), 'header', /did you mean "headers"\?/);
      // TLS settings are ioredis's own (`redis: { tls }`, or a rediss:// URL): not a key of these options.
      rejects(() => resolveBufferOptions({ tls: {} } as never), 'tls', /is not an option/);
    });

    it('throws for a misspelt seam of a Responder or Caller (the Nest-free API), before any connection is made', () => {
      rejects(() => new Responder({}, { loger: console } as never), 'seams.loger', /did you mean "seams.logger"\?/);
      rejects(() => new Responder({}, { runaround: undefined } as never), 'seams.runaround', /did you mean "seams.runAround"\?/);
      rejects(() => new Caller({}, { clok: undefined } as never), 'seams.clok', /did you mean "seams.clock"\?/);
    });

    it('rejects a misspelt per-call option of emit, durable.deadLetters and durable.eachDeadLetter, before any connection is made', async () => {
      const caller = new Caller({ redis: 'redis://127.0.0.1:1', connectTimeout: 100 });
      try {
        await expect(caller.emit('x', null, { header: {} } as never)).rejects.toMatchObject({ name: 'InvalidOptionsError', option: 'header', message: expect.stringMatching(/did you mean "headers"\?/) });
      } finally {
        await caller.close();
      }
      const durable = new DurablePublisher(resolveBufferOptions({ redis: 'redis://127.0.0.1:1', connectTimeout: 100 }));
      await expect(durable.deadLetters('job', 'g', { limit: 10 } as never)).rejects.toMatchObject({ name: 'InvalidOptionsError', option: 'limit', message: expect.stringMatching(/is not an option \(known: count, after\)/) });
      await expect(durable.deadLetters('job', 'g', { cout: 10 } as never)).rejects.toMatchObject({ option: 'cout', message: expect.stringMatching(/did you mean "count"\?/) });
      await expect(durable.deadLetters('job', 'g', { count: 0 })).rejects.toMatchObject({ option: 'count', message: expect.stringMatching(/positive integer/) });
      await expect(durable.deadLetters('job', 'g', { after: 'last' })).rejects.toMatchObject({ option: 'after', message: expect.stringMatching(/id of a dead letter/) });
      await expect(durable.eachDeadLetter('job', 'g', { pagesize: 10 } as never).next()).rejects.toMatchObject({ option: 'pagesize', message: expect.stringMatching(/did you mean "pageSize"\?/) });
      await durable.close();
    });

    it('accepts every documented key', () => {
      const defaults = resolveBufferOptions();
      expect(() => resolveCallOptions(defaults, { timeout: 100, quorum: 1, until: () => true, stall: 50, headers: {}, onReply: () => undefined, signal: new AbortController().signal } as never)).not.toThrow();
    });
  });
});
