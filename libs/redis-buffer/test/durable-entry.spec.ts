import { compareEntryIds, decodeEntry, encodeEntry, fieldsToRecord, isPattern } from '../src/core/durable/durable-entry.js';
import { decodeDeadLetter, encodeDeadLetter, replayFields } from '../src/core/durable/dead-letter.js';
import { DurableKeys } from '../src/core/durable/durable-keys.js';

describe('durable entry format', () => {
  it('round-trips every field', () => {
    const fields = encodeEntry({ pattern: 'order.placed', dataJson: '{"id":1}', headers: { 'x-a': '1' }, key: 'c-1', idempotencyKey: 'o-1', from: 'api-1', publishedAt: 1700000000000 });
    expect(fields).toEqual(['v', '1', 'pattern', 'order.placed', 'data', '{"id":1}', 'headers', '{"x-a":"1"}', 'key', 'c-1', 'idem', 'o-1', 'from', 'api-1', 'at', '1700000000000']);
    expect(decodeEntry(fields)).toEqual({ pattern: 'order.placed', data: { id: 1 }, headers: { 'x-a': '1' }, key: 'c-1', idempotencyKey: 'o-1', from: 'api-1', publishedAt: 1700000000000, group: undefined });
  });

  it('reads the smallest entry another language could write', () => {
    expect(decodeEntry(['v', '1', 'pattern', 'p'])).toMatchObject({ pattern: 'p', data: undefined, headers: {}, key: undefined });
  });

  it.each([
    [['pattern', 'p'], 'unsupported entry version'],
    [['v', '2', 'pattern', 'p'], 'unsupported entry version'],
    [['v', '1'], '"pattern"'],
    [['v', '1', 'pattern', 'a{b}'], '"pattern"'],
    [['v', '1', 'pattern', 'p', 'data', '{'], '"data" is not JSON'],
    [['v', '1', 'pattern', 'p', 'headers', '[1]'], '"headers" must be an object'],
    [['v', '1', 'pattern', 'p', 'headers', '{"__proto__":"x"}'], 'not allowed'],
    [['v', '1', 'pattern', 'p', 'key', ''], '"key"'],
    [['v', '1', 'pattern', 'p', 'at', 'soon'], '"at"'],
  ])('refuses %j: %s', (fields, problem) => {
    const result = decodeEntry(fields);
    expect(typeof result).toBe('string');
    expect(result).toContain(problem);
  });

  it('keeps the first of a repeated field', () => {
    expect(fieldsToRecord(['a', '1', 'a', '2']).a).toBe('1');
  });

  it('compares entry ids as numbers', () => {
    expect(compareEntryIds('5-10', '5-9')).toBeGreaterThan(0);
    expect(compareEntryIds('10-0', '9-99')).toBeGreaterThan(0);
    expect(compareEntryIds('1795436545585-1', '1795436545585-1')).toBe(0);
  });

  it('refuses braces in patterns: they would break the keys\' cluster hash tag', () => {
    expect(isPattern('order.placed')).toBe(true);
    expect(isPattern('a{b')).toBe(false);
    expect(new DurableKeys('rb', 'order.placed').stream).toBe('rb:durable:{order.placed}');
    expect(new DurableKeys('rb', 'order.placed').order('billing')).toBe('rb:durable:{order.placed}:order:billing');
  });

  it('dead letters carry the original fields unchanged after their own, and a replay targets the group', () => {
    const original = encodeEntry({ pattern: 'p', dataJson: '1', headers: {}, group: 'old' });
    const fields = encodeDeadLetter({ entryId: '1-0', group: 'billing', attempts: 3, error: { code: 'E' }, consumer: 'i1', failedAt: 5, fields: original });
    const dead = decodeDeadLetter('9-0', fields);
    expect(dead).toMatchObject({ id: '9-0', entryId: '1-0', group: 'billing', attempts: 3, error: { code: 'E' }, consumer: 'i1', failedAt: 5, pattern: 'p', fields: original });
    expect(fieldsToRecord(replayFields(dead))).toMatchObject({ v: '1', pattern: 'p', data: '1', group: 'billing' });
  });

  it('records an Error in a dead letter by name, message and code', () => {
    const fields = encodeDeadLetter({ entryId: '1-0', group: 'g', attempts: 1, error: Object.assign(new TypeError('bad'), { code: 'E_X' }), consumer: 'i', failedAt: 0, fields: [] });
    expect(decodeDeadLetter('2-0', fields).error).toEqual({ name: 'TypeError', message: 'bad', code: 'E_X' });
  });
});
