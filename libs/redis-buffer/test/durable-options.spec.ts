import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { checkDurablePublishOptions, DURABLE_DEFAULTS, resolveDurableHandlerOptions, resolveDurableOptions, retryDelayAfter } from '../src/core/durable/durable-options.js';
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

  it('rejects a misspelt key of a handler or of a publish call, naming the nearest one', () => {
    expect(() => resolveDurableHandlerOptions(resolveDurableOptions(), { retryDelai: 10 } as never)).toThrow(/Invalid option "retryDelai": is not an option; did you mean "retryDelay"\?/);
    expect(() => checkDurablePublishOptions({ idempotencykey: 'x' } as never)).toThrow(/did you mean "idempotencyKey"\?/);
    expect(() => checkDurablePublishOptions({ key: 'k', idempotencyKey: 'i', headers: {} })).not.toThrow();
  });
});
