import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { checkDurablePublishOptions, DURABLE_DEFAULTS, resolveDurableHandlerOptions, resolveDurableOptions, resolvePublishReplicas, retryDelayAfter } from '../src/core/durable/durable-options.js';
import { resolveBufferOptions } from '../src/core/options.js';
import { settingsMismatches } from '../src/core/durable/durable-settings.js';

describe('durable options', () => {
  it('fills every default from one place, also under BufferOptions.durable', () => {
    expect(resolveDurableOptions()).toEqual(DURABLE_DEFAULTS);
    expect(resolveBufferOptions().durable).toEqual(DURABLE_DEFAULTS);
    expect(resolveBufferOptions({ durable: { maxAttempts: 2 } }).durable).toEqual({ ...DURABLE_DEFAULTS, maxAttempts: 2 });
  });

  it('keeps claimInterval within claimIdle when only claimIdle is set', () => {
    expect(resolveDurableOptions({ claimIdle: 1000 }).claimInterval).toBe(1000);
    expect(resolveDurableOptions({ claimIdle: 60_000 }).claimInterval).toBe(DURABLE_DEFAULTS.claimInterval);
  });

  it.each([
    [{ group: 'a b' }, 'durable.group'],
    [{ group: '' }, 'durable.group'],
    [{ maxAttempts: 0 }, 'durable.maxAttempts'],
    [{ retryDelay: -1 }, 'durable.retryDelay'],
    [{ retryDelay: 500, maxRetryDelay: 100 }, 'durable.maxRetryDelay'],
    [{ claimIdle: 10 }, 'durable.claimIdle'],
    [{ maxInFlight: 1.5 }, 'durable.maxInFlight'],
    [{ maxLength: -1 }, 'durable.maxLength'],
    [{ maxAge: 0 }, 'durable.maxAge'],
    [{ newGroupStartsAt: 'now' }, 'durable.newGroupStartsAt'],
    [{ approximateTrim: 'yes' }, 'durable.approximateTrim'],
    [{ replicas: 1 }, 'durable.replicas'],
    [{ replicas: { min: -1 } }, 'durable.replicas.min'],
    [{ replicas: { min: 1.5 } }, 'durable.replicas.min'],
    [{ replicas: { min: '1' } }, 'durable.replicas.min'],
    [{ replicas: { min: 1, timeout: 0 } }, 'durable.replicas.timeout'],
    [{ replicas: { min: 1, timeout: Infinity } }, 'durable.replicas.timeout'],
    [{ replicas: { min: 1, timeoutMs: 500 } }, 'durable.replicas.timeoutMs'],
  ])('rejects %j naming "%s"', (options, option) => {
    try {
      resolveDurableOptions(options as never);
      throw new Error('accepted');
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidOptionsError);
      expect((error as InvalidOptionsError).option).toBe(option);
    }
  });

  it('per handler: its own fields over the module defaults, validated the same way', () => {
    const defaults = resolveDurableOptions({ group: 'workers', maxAttempts: 7 });
    expect(resolveDurableHandlerOptions(defaults)).toEqual({ group: 'workers', maxAttempts: 7, retryDelay: 1000, maxRetryDelay: 30_000 });
    expect(resolveDurableHandlerOptions(defaults, { group: 'billing', retryDelay: 50 })).toMatchObject({ group: 'billing', retryDelay: 50 });
    expect(() => resolveDurableHandlerOptions(defaults, { group: 'no spaces' })).toThrow(InvalidOptionsError);
  });

  it('per pattern from configuration: durable.handlers under the decorator\'s own fields, over the module\'s', () => {
    const defaults = resolveDurableOptions({ group: 'workers', maxAttempts: 7, handlers: { 'order.placed': { group: 'billing', retryDelay: 50 } } });
    expect(resolveDurableHandlerOptions(defaults, {}, 'order.placed')).toEqual({ group: 'billing', maxAttempts: 7, retryDelay: 50, maxRetryDelay: 30_000 });
    expect(resolveDurableHandlerOptions(defaults, { group: 'audit' }, 'order.placed')).toMatchObject({ group: 'audit', retryDelay: 50 });
    expect(resolveDurableHandlerOptions(defaults, {}, 'other')).toMatchObject({ group: 'workers' });
    try {
      resolveDurableOptions({ handlers: { 'order.placed': { group: 'no spaces' } } });
      throw new Error('accepted');
    } catch (error) {
      expect((error as InvalidOptionsError).option).toBe('durable.handlers.order.placed.group');
    }
  });

  it('names each shared option that differs from the ones recorded for the stream (the publisher does not claim)', () => {
    const durable = resolveDurableOptions({ claimIdle: 1000, idempotencyWindow: 60_000 });
    const recorded = { claimIdle: '30000', idempotencyWindow: '60000', maxLength: '100000', maxAge: 'off', approximateTrim: 'true', by: 'c1' };
    expect(settingsMismatches(durable, recorded, 'consumer')).toEqual(['durable.claimIdle is 1000 here but 30000 in Redis (recorded by instance "c1")']);
    expect(settingsMismatches(durable, recorded, 'publisher')).toEqual([]);
    expect(settingsMismatches(resolveDurableOptions({ idempotencyWindow: 60_000, maxAge: 5000 }), recorded, 'publisher')).toEqual(['durable.maxAge is 5000 here but off in Redis (recorded by instance "c1")']);
    expect(settingsMismatches(durable, {}, 'consumer')).toEqual([]);
  });

  it('doubles the retry delay from retryDelay up to maxRetryDelay, with at most 20 % jitter below', () => {
    const options = { retryDelay: 100, maxRetryDelay: 1000 };
    expect([1, 2, 3, 4, 5, 40].map((attempt) => retryDelayAfter(attempt, options, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(retryDelayAfter(1, options, () => 0)).toBe(80);
  });

  it('replicas: off by default; a wait must fit in the module timeout, which bounds WAIT like every command of a publish', () => {
    expect(DURABLE_DEFAULTS.replicas).toEqual({ min: 0, timeout: 1000 });
    expect(resolveDurableOptions({ replicas: { min: 1 } }).replicas).toEqual({ min: 1, timeout: 1000 });
    expect(resolveBufferOptions({ timeout: 2000, durable: { replicas: { min: 2, timeout: 500 } } }).durable.replicas).toEqual({ min: 2, timeout: 500 });
    // Unused while min is 0: a short module timeout is not refused for it.
    expect(resolveBufferOptions({ timeout: 500 }).durable.replicas).toEqual({ min: 0, timeout: 1000 });
    const refused = (run: () => unknown): InvalidOptionsError => {
      try {
        run();
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidOptionsError);
        return error as InvalidOptionsError;
      }
      throw new Error('accepted');
    };
    const tooLong = refused(() => resolveBufferOptions({ timeout: 1000, durable: { replicas: { min: 1, timeout: 1000 } } }));
    expect(tooLong.option).toBe('durable.replicas.timeout');
    expect(tooLong.message).toMatch(/\(1000 ms\) must be shorter than "timeout" \(1000 ms\)/);
    expect(refused(() => resolveBufferOptions({ timeout: 500, durable: { replicas: { min: 1 } } })).option).toBe('durable.replicas.timeout');
    expect(refused(() => resolveDurableOptions({ replicas: { mni: 1 } } as never)).message).toMatch(/"durable\.replicas\.mni": is not an option; did you mean "durable\.replicas\.min"\?/);
  });

  it('replicas per publish: its own fields over the module\'s, checked the same way', () => {
    const module = resolveDurableOptions({ replicas: { min: 1, timeout: 400 } }).replicas;
    expect(resolvePublishReplicas(module, undefined, 5000)).toEqual({ min: 1, timeout: 400 });
    expect(resolvePublishReplicas(module, { min: 0 }, 5000)).toEqual({ min: 0, timeout: 400 });
    expect(resolvePublishReplicas(module, { min: 2, timeout: 900 }, 5000)).toEqual({ min: 2, timeout: 900 });
    expect(() => checkDurablePublishOptions({ replicas: { min: 1 } })).not.toThrow();
    const option = (replicas: unknown, commandTimeout = 5000): string => {
      try {
        resolvePublishReplicas(module, replicas as never, commandTimeout);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidOptionsError);
        return (error as InvalidOptionsError).option;
      }
      return 'accepted';
    };
    expect(option({ min: -2 })).toBe('replicas.min');
    expect(option({ timeout: 'soon' })).toBe('replicas.timeout');
    expect(option({ min: 1, timeout: 5000 })).toBe('replicas.timeout');
    expect(option(undefined, 400)).toBe('durable.replicas.timeout');
    expect(option({ min: 0, timeout: 9000 }, 400)).toBe('accepted');
    expect(option({ count: 1 })).toBe('replicas.count');
    expect(option(null)).toBe('replicas');
  });

  it('rejects a misspelt key of a handler or of a publish call, naming the nearest one', () => {
    expect(() => resolveDurableHandlerOptions(resolveDurableOptions(), { retryDelai: 10 } as never)).toThrow(/Invalid option "retryDelai": is not an option; did you mean "retryDelay"\?/);
    expect(() => checkDurablePublishOptions({ idempotencykey: 'x' } as never)).toThrow(/did you mean "idempotencyKey"\?/);
    expect(() => checkDurablePublishOptions({ key: 'k', idempotencyKey: 'i', headers: {} })).not.toThrow();
  });
});
