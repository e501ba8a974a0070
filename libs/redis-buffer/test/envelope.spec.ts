import { decodeMessage, encodeBatch, encodeCompactReply, encodeEnvelope, encodeReplyParts, encodeRequestRest, validateEnvelope, validateHeaders, type RequestEnvelope } from '../src/core/wire/envelope.js';
import { BadMessageError } from '../src/core/errors/bad-message.error.js';
import { Prng } from './sim/prng.js';

const request = { v: 1, kind: 'request', id: 'r1', pattern: 'p', from: 'a', replyTo: 'rb:inbox:a', ttl: 1000, headers: { h: 'v' }, data: { x: 1 } };

describe('envelope', () => {
  it('round-trips a request, an event and a reply', () => {
    const event = { v: 1, kind: 'event', id: 'e1', pattern: 'p', from: 'a', headers: {}, data: 'k' };
    const reply = { v: 1, kind: 'reply', id: 'r1', from: 'b', seq: 0, done: true, data: [1] };
    for (const envelope of [request, event, reply]) {
      const decoded = decodeMessage(encodeEnvelope(envelope as never));
      expect(decoded.rejected).toEqual([]);
      expect(JSON.parse(JSON.stringify(decoded.envelopes[0]))).toEqual(envelope);
    }
  });

  it('decodes a batch into its envelopes, dropping only the bad elements', () => {
    const message = encodeBatch([JSON.stringify(request), '{"v":1,"kind":"nope"}', JSON.stringify({ ...request, id: 'r2' })]);
    const decoded = decodeMessage(message, 'chan');
    expect(decoded.envelopes.map((e) => e.id)).toEqual(['r1', 'r2']);
    expect(decoded.rejected).toHaveLength(1);
    expect(decoded.rejected[0]!.error).toBeInstanceOf(BadMessageError);
    expect(decoded.rejected[0]!.error.message).toContain('batch element 1');
    expect(decoded.rejected[0]!.error.code).toBe('BUFFER_BAD_MESSAGE');
  });

  it('encodes a request from parts exactly as JSON.stringify does, leaving empty headers out', () => {
    const cases: unknown[] = [{ x: 1 }, null, 'text "quoted" \u2028 é', [1, 'two', { three: [3] }], 0, false, { nested: { deep: [null, true] } }];
    const headerCases = [validateHeaders(undefined), { h: 'v' }, { 'x-tenant': 'a"b', traceparent: '00-abc' }];
    for (const data of cases) {
      for (const headers of headerCases) {
        const envelope = { ttl: 1234, v: 1, kind: 'request', cr: 1, id: 'id-"1"', pattern: 'resource.find{"a":1}', from: 'caller é', replyTo: 'rb:inbox:caller.x', headers, data } as RequestEnvelope;
        const rest = encodeRequestRest(envelope, JSON.stringify(envelope.from), JSON.stringify(envelope.replyTo));
        const empty = Object.keys(headers as object).length === 0;
        expect(`{"ttl":1234${rest}`).toBe(encodeEnvelope(empty ? ({ ...envelope, headers: undefined } as unknown as RequestEnvelope) : envelope));
        const decoded = decodeMessage(`{"ttl":1234${rest}`);
        expect(decoded.rejected).toEqual([]);
        expect({ ...decoded.envelopes[0] }).toEqual({ ...envelope, headers: empty ? {} : headers });
      }
    }
    // What JSON cannot represent travels as null, which receivers read as no data.
    const odd = { ttl: 5, v: 1, kind: 'request', cr: 1, id: 'i', pattern: 'p', from: 'f', replyTo: 'rb:inbox:f', headers: {}, data: () => 1 } as unknown as RequestEnvelope;
    const decoded = decodeMessage(`{"ttl":5${encodeRequestRest(odd, '"f"', '"rb:inbox:f"')}`);
    expect(decoded.rejected).toEqual([]);
    expect((decoded.envelopes[0] as RequestEnvelope).data).toBeNull();
  });

  it('a batch of one is the envelope itself', () => {
    expect(encodeBatch(['{"a":1}'])).toBe('{"a":1}');
    expect(encodeBatch(['{"a":1}', '{"b":2}'])).toBe('[{"a":1},{"b":2}]');
  });

  it.each([
    ['not JSON', '{oops', 'not JSON'],
    ['a number', '42', 'not an object'],
    ['another version', JSON.stringify({ ...request, v: 2 }), 'unsupported protocol version'],
    ['no id', JSON.stringify({ ...request, id: '' }), '"id"'],
    ['an id that is too long', JSON.stringify({ ...request, id: 'x'.repeat(200) }), '"id"'],
    ['a deadline that is not a number', JSON.stringify({ ...request, deadline: 'soon' }), '"deadline"'],
    ['a sent time that is not a number', JSON.stringify({ ...request, sent: 'now' }), '"sent"'],
    ['a negative ttl', JSON.stringify({ ...request, ttl: -5 }), '"ttl"'],
    ['a request with neither ttl nor deadline', JSON.stringify({ ...request, ttl: undefined }), 'needs "ttl"'],
    ['a header name that is too long', JSON.stringify({ ...request, headers: { ['h'.repeat(300)]: 'v' } }), 'header names'],
    ['a refused reply without an error', JSON.stringify({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: true, data: 1, refused: true }), '"refused"'],
    ['a hello without patterns', JSON.stringify({ v: 1, kind: 'hello', id: 'h', from: 'a', inc: 'i', events: [] }), '"patterns"'],
    ['headers that are not strings', JSON.stringify({ ...request, headers: { a: 1 } }), 'header "a"'],
    ['a __proto__ header', '{"v":1,"kind":"request","id":"r","pattern":"p","from":"a","replyTo":"x","deadline":1,"headers":{"__proto__":"x"},"data":1}', '__proto__'],
    ['a reply with a negative seq', JSON.stringify({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: -1, done: true }), '"seq"'],
    ['a reply with data and error', JSON.stringify({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: true, data: 1, error: 2 }), 'not both'],
    ['an empty reply that is not done', JSON.stringify({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: false }), 'must have "done": true'],
  ])('rejects %s with a reason', (_label, raw, reason) => {
    const decoded = decodeMessage(raw);
    expect(decoded.envelopes).toEqual([]);
    expect(decoded.rejected[0]!.error.message).toContain(reason);
  });

  it('a hostile key never reaches a prototype, and headers cannot shadow one', () => {
    const raw = '{"v":1,"kind":"request","id":"r","pattern":"p","from":"a","replyTo":"x","deadline":1,"headers":{"h":"v"},"data":{"__proto__":{"polluted":true}},"constructor":{"prototype":{"polluted":true}}}';
    const envelope = validateEnvelope(JSON.parse(raw));
    expect(typeof envelope).toBe('object');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect((envelope as { headers: object }).headers).toEqual({ h: 'v' });
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      const hostile = `{"v":1,"kind":"event","id":"e","pattern":"p","from":"a","headers":{"${name}":"x"},"data":1}`;
      expect(validateEnvelope(JSON.parse(hostile))).toContain(`header name "${name}" is not allowed`);
    }
  });

  it('says where to refuse an invalid request that has an id and a replyTo, and why', () => {
    const v2 = decodeMessage(JSON.stringify({ ...request, v: 2 }));
    expect(v2.rejected[0]!.refusable).toEqual({ id: 'r1', replyTo: 'rb:inbox:a', code: 'BUFFER_UNSUPPORTED_VERSION', reason: expect.stringContaining('version 2') });
    const badHeader = decodeMessage(JSON.stringify({ ...request, headers: { h: 'x'.repeat(10_000) } }));
    expect(badHeader.rejected[0]!.refusable).toMatchObject({ id: 'r1', code: 'BUFFER_BAD_REQUEST' });
    // Without an id or a replyTo there is nowhere to answer.
    expect(decodeMessage(JSON.stringify({ ...request, v: 2, replyTo: 7 })).rejected[0]!.refusable).toBeUndefined();
    expect(decodeMessage(JSON.stringify({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: -1, done: true })).rejected[0]!.refusable).toBeUndefined();
  });

  it('gives a request without data null, and without headers an empty set', () => {
    const envelope = validateEnvelope({ v: 1, kind: 'request', id: 'r', pattern: 'p', from: 'a', replyTo: 'x', ttl: 1 });
    expect(envelope).toMatchObject({ data: null, headers: {} });
  });

  it('encodes a reply from parts, with done decided late', () => {
    const encoded = encodeReplyParts('"r1"', '"b"', 3, true, 'data', '{"k":1}');
    expect(JSON.parse(encoded)).toEqual({ v: 1, kind: 'reply', id: 'r1', from: 'b', seq: 3, done: true, data: { k: 1 } });
    expect(JSON.parse(encodeReplyParts('"r1"', '"b"', 4, true, undefined, undefined))).toEqual({ v: 1, kind: 'reply', id: 'r1', from: 'b', seq: 4, done: true });
    expect(JSON.parse(encodeReplyParts('"r1"', '"b"', 0, true, 'error', '{"code":"BUFFER_EXPIRED"}', true))).toEqual({ v: 1, kind: 'reply', id: 'r1', from: 'b', seq: 0, done: true, refused: true, error: { code: 'BUFFER_EXPIRED' } });
  });

  it('reads a compact reply as the object form it stands for, alone or beside objects in a batch', () => {
    const compact = encodeCompactReply('"r1"', '"b"', 2, false, '{"k":[1,"x"]}');
    expect(compact).toBe('["r1","b",2,false,{"k":[1,"x"]}]');
    // Alone it is still a batch: a message that is an array is a batch.
    expect(encodeBatch([compact])).toBe(`[${compact}]`);
    const alone = decodeMessage(encodeBatch([compact]), 'chan');
    expect(alone.rejected).toEqual([]);
    expect(alone.envelopes).toEqual([{ v: 1, kind: 'reply', id: 'r1', from: 'b', seq: 2, done: false, data: { k: [1, 'x'] } }]);
    // null is a value, as with "data": null.
    const mixed = decodeMessage(encodeBatch([encodeCompactReply('"r1"', '"c"', 0, true, 'null'), encodeReplyParts('"r1"', '"d"', 0, true, 'error', '{"m":1}')]), 'chan');
    expect(mixed.rejected).toEqual([]);
    expect(mixed.envelopes).toEqual([
      { v: 1, kind: 'reply', id: 'r1', from: 'c', seq: 0, done: true, data: null },
      { v: 1, kind: 'reply', id: 'r1', from: 'd', seq: 0, done: true, error: { m: 1 } },
    ]);
    expect(Object.hasOwn(mixed.envelopes[0]!, 'data')).toBe(true);
  });

  it('reads seeded random batches of compact replies, good and broken, without throwing or letting a bad one through', () => {
    // COMPACT_SEED=<n> replays one seed; the seed of a failure is in its message.
    const first = Number(process.env.COMPACT_SEED ?? 1);
    const seeds = process.env.COMPACT_SEED === undefined ? 300 : 1;
    const values: unknown[] = [null, 0, -1, 1.5, true, false, '', 'x', 'é"\\', [], [1, [2]], {}, { a: [null] }, 'i'.repeat(129), 'f'.repeat(257), 2 ** 53];
    for (let seed = first; seed < first + seeds; seed++) {
      const random = new Prng(seed);
      const pick = <T>(list: readonly T[]): T => list[random.int(0, list.length - 1)]!;
      const elements: unknown[] = [];
      for (let index = random.int(1, 40); index > 0; index--) {
        const good: unknown[] = [`r${random.int(0, 9)}`, `i${random.int(0, 9)}`, random.int(0, 3), random.float() < 0.5, pick(values)];
        // Half of them broken: one position replaced, one element added or removed, or not an array.
        const broken = random.float() < 0.5;
        if (broken) {
          const how = random.int(0, 3);
          if (how === 0) good[random.int(0, 3)] = pick(values);
          else if (how === 1) good.push(pick(values));
          else if (how === 2) good.splice(random.int(0, 4), 1);
          else elements.push(pick(values));
        }
        if (!broken || random.int(0, 3) !== 3) elements.push(good);
      }
      const message = JSON.stringify(elements);
      try {
        checkCompactBatch(message, elements);
      } catch (error) {
        throw new Error(`seed ${seed} (COMPACT_SEED=${seed} replays it), message ${message}: ${(error as Error).message}`);
      }
    }
  });

  function checkCompactBatch(message: string, elements: unknown[]): void {
    const decoded = decodeMessage(message, 'chan');
    expect(decoded.envelopes.length + decoded.rejected.length).toBe(elements.length);
    // What is accepted is exactly the five-element arrays within bounds, read as the reply they stand for.
    const expected = elements.filter((element): element is unknown[] => {
      if (!Array.isArray(element) || element.length !== 5) return false;
      const [id, from, seq, done] = element;
      return typeof id === 'string' && id.length >= 1 && id.length <= 128 && typeof from === 'string' && from.length >= 1 && from.length <= 256 && Number.isSafeInteger(seq) && (seq as number) >= 0 && typeof done === 'boolean';
    });
    expect(decoded.envelopes).toEqual(expected.map(([id, from, seq, done, data]) => ({ v: 1, kind: 'reply', id, from, seq, done, data })));
    for (const envelope of decoded.envelopes) expect(validateEnvelope({ ...envelope })).toEqual(envelope);
    for (const { error, refusable } of decoded.rejected) {
      expect(error).toBeInstanceOf(BadMessageError);
      expect(refusable).toBeUndefined();
    }
  }

  it('drops a malformed compact reply and keeps the rest of its batch', () => {
    const good = encodeCompactReply('"r1"', '"b"', 0, true, '1');
    const bad: Array<[string, string]> = [
      ['["r1","b",0,true]', 'not an array of 4'],
      ['["r1","b",0,true,1,2]', 'not an array of 6'],
      ['[1,"b",0,true,1]', 'id must be a string'],
      [`["${'i'.repeat(129)}","b",0,true,1]`, 'id must be a string'],
      ['["r1","",0,true,1]', 'from must be a string'],
      ['["r1","b",-1,true,1]', 'seq must be a non-negative integer'],
      ['["r1","b",1.5,true,1]', 'seq must be a non-negative integer'],
      ['["r1","b",0,1,1]', 'done must be a boolean'],
      ['[]', 'not an array of 0'],
    ];
    for (const [element, reason] of bad) {
      const decoded = decodeMessage(`[${element},${good}]`, 'chan');
      expect(decoded.envelopes).toHaveLength(1);
      expect(decoded.rejected).toHaveLength(1);
      expect(decoded.rejected[0]!.error.message).toContain('batch element 0');
      expect(decoded.rejected[0]!.error.message).toContain(reason);
      expect(decoded.rejected[0]!.refusable).toBeUndefined();
    }
    // A compact reply sent as a message of its own reads as a batch of five bad elements.
    const bare = decodeMessage(good, 'chan');
    expect(bare.envelopes).toEqual([]);
    expect(bare.rejected).toHaveLength(5);
  });
});
