import { keySlot } from '../src/core/bus/key-slot.js';
import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { bindingKeys, DurableKeys } from '../src/core/durable/durable-keys.js';
import { headersMatch, resolveDurableHandlerOptions, resolveDurableOptions } from '../src/core/durable/durable-options.js';

describe('durable routing', () => {
  describe('by header', () => {
    it('runs an entry that carries every filtered header with the same value, extra headers allowed', () => {
      expect(headersMatch({ region: 'eu' }, { region: 'eu', tier: 'gold' })).toBe(true);
      expect(headersMatch({ region: 'eu', tier: 'gold' }, { region: 'eu', tier: 'gold' })).toBe(true);
      expect(headersMatch(undefined, {})).toBe(true);
    });

    it('leaves out an entry missing a filtered header or carrying another value (values compare exactly)', () => {
      expect(headersMatch({ region: 'eu' }, {})).toBe(false);
      expect(headersMatch({ region: 'eu' }, { region: 'us' })).toBe(false);
      expect(headersMatch({ region: 'eu' }, { region: 'EU' })).toBe(false);
      expect(headersMatch({ region: 'eu', tier: 'gold' }, { region: 'eu' })).toBe(false);
      expect(headersMatch({ region: '' }, { other: '' })).toBe(false);
    });

    it('never matches a header inherited from Object.prototype', () => {
      expect(headersMatch({ constructor: 'x' } as Record<string, string>, {})).toBe(false);
    });

    it('resolves a handler filter (an empty one is no filter), from the decorator or durable.handlers', () => {
      const defaults = resolveDurableOptions({ handlers: { 'order.*': { headers: { region: 'us' } } } });
      expect(resolveDurableHandlerOptions(defaults, { headers: { region: 'eu' } }).headers).toEqual({ region: 'eu' });
      expect(resolveDurableHandlerOptions(defaults, {}, 'order.*').headers).toEqual({ region: 'us' });
      expect(resolveDurableHandlerOptions(defaults, { headers: { region: 'eu' } }, 'order.*').headers).toEqual({ region: 'eu' });
      expect(resolveDurableHandlerOptions(defaults, { headers: {} }).headers).toBeUndefined();
      expect(resolveDurableHandlerOptions(defaults, {}).headers).toBeUndefined();
    });

    it.each([
      [{ headers: 'eu' }, 'must be an object of strings'],
      [{ headers: { region: 1 } }, 'header "region" must be a string'],
      [{ headers: { '': 'x' } }, 'header names must have'],
      [{ headers: JSON.parse('{"__proto__":"x"}') as Record<string, string> }, 'not allowed'],
    ])('refuses the filter %j with the rule a publish uses (%s)', (options, message) => {
      const call = (): unknown => resolveDurableHandlerOptions(resolveDurableOptions(), options as never);
      expect(call).toThrow(InvalidOptionsError);
      expect(call).toThrow(message);
    });

    it('refuses a filter in durable.handlers naming where it is', () => {
      expect(() => resolveDurableOptions({ handlers: { 'order.*': { headers: { region: 5 as unknown as string } } } })).toThrow('durable.handlers.order.*.headers');
    });
  });

  describe('keys', () => {
    it('keeps the bindings registry in one slot, under the ACL-covered prefix, apart from every pattern key', () => {
      const { bindings, version } = bindingKeys('rb');
      expect(bindings).toBe('rb:durable:bindings:{rb}');
      expect(keySlot(version)).toBe(keySlot(bindings));
      expect(bindings.startsWith('rb:durable:')).toBe(true);
      // Pattern keys have "{" right after "durable:"; the registry's do not.
      expect(new DurableKeys('rb', 'bindings').stream).toBe('rb:durable:{bindings}');
      expect(bindings.startsWith(new DurableKeys('rb', 'bindings').stream)).toBe(false);
    });

    it('gives a wildcard binding its own stream, all of whose keys share its hash tag', () => {
      const keys = new DurableKeys('rb', 'order.*');
      expect(keys.stream).toBe('rb:durable:{order.*}');
      for (const key of [keys.deadLetters('g'), keys.published('i'), keys.order('g'), keys.attempts('g'), keys.handled('g', 'i')]) expect(keySlot(key)).toBe(keySlot(keys.stream));
      expect(keySlot(keys.stream)).not.toBe(keySlot(new DurableKeys('rb', 'order.created').stream));
    });
  });
});
