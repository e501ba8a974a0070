import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { BUFFER_DEFAULTS, resolveBufferOptions, resolveCallOptions } from '../src/core/options.js';

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

    it('accepts every documented key', () => {
      const defaults = resolveBufferOptions();
      expect(() => resolveCallOptions(defaults, { timeout: 100, quorum: 1, until: () => true, stall: 50, headers: {}, onReply: () => undefined, signal: new AbortController().signal } as never)).not.toThrow();
    });
  });
});
