import { validateEnvelope, validateHeaders, type RequestEnvelope } from '../src/core/wire/envelope.js';
import { decodeMessage } from '../src/core/wire/decode.js';
import {
  encodeBatch,
  encodeCompactReply,
  encodeCompactRequest,
  encodeEnvelope,
  encodeHeadedBatch,
  encodeReplyParts,
  encodeRequestHead,
  encodeRequestObject,
  encodeRequestParts,
} from '../src/core/wire/encode.js';
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
        const envelope = { ttl: 1234, sent: 1796000000000, v: 1, kind: 'request', cr: 1, id: 'id-"1"', pattern: 'resource.find{"a":1}', from: 'caller é', replyTo: 'rb:inbox:caller.x', headers, data } as RequestEnvelope;
        const encoded = encodeRequestObject(encodeRequestParts(envelope), 1234, 1796000000000, JSON.stringify(envelope.from), JSON.stringify(envelope.replyTo));
        const empty = Object.keys(headers as object).length === 0;
        expect(encoded).toBe(encodeEnvelope(empty ? ({ ...envelope, headers: undefined } as unknown as RequestEnvelope) : envelope));
        const decoded = decodeMessage(encoded);
        expect(decoded.rejected).toEqual([]);
        expect({ ...decoded.envelopes[0] }).toEqual({ ...envelope, headers: empty ? {} : headers });
      }
    }
    // What JSON cannot represent travels as null, which receivers read as no data.
    const odd = { ttl: 5, v: 1, kind: 'request', cr: 1, id: 'i', pattern: 'p', from: 'f', replyTo: 'rb:inbox:f', headers: {}, data: () => 1 } as unknown as RequestEnvelope;
    const decoded = decodeMessage(encodeRequestObject(encodeRequestParts(odd), 5, 0, '"f"', '"rb:inbox:f"'));
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
    const values: unknown[] = [null, 0, -1, 1.5, true, false, '', 'x', 'é"\\', [], [1, [2]], {}, { a: [null] }, 'i'.repeat(129), 'f'.repeat(257), 2 ** 53];
    forSeeds((random) => {
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
      return [JSON.stringify(elements), (message) => checkCompactBatch(message, elements)];
    });
  });

  /**
   * Runs a seeded trial for 300 seeds: `build` makes a message from its random source, and the
   * check it returns runs on it. COMPACT_SEED=<n> replays one seed; a failure names its seed.
   */
  function forSeeds(build: (random: Prng) => [message: string, check: (message: string) => void]): void {
    const first = Number(process.env.COMPACT_SEED ?? 1);
    const seeds = process.env.COMPACT_SEED === undefined ? 300 : 1;
    for (let seed = first; seed < first + seeds; seed++) {
      const [message, check] = build(new Prng(seed));
      try {
        check(message);
      } catch (error) {
        throw new Error(`seed ${seed} (COMPACT_SEED=${seed} replays it), message ${message}: ${(error as Error).message}`);
      }
    }
  }

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
  describe('compact requests', () => {
    const head = encodeRequestHead('"caller é"', '"rb:inbox:caller.x"', 1796000000000);
    const shared = { v: 1, kind: 'request', from: 'caller é', replyTo: 'rb:inbox:caller.x', sent: 1796000000000, cr: 1 };

    it('reads each array after a request head as the request object it stands for, beside objects', () => {
      const cases: Array<{ id: string; pattern: string; ttl: number; headers: Record<string, string>; data: unknown }> = [
        { id: 'r1', pattern: 'resource.find', ttl: 4998, headers: {}, data: { x: [1, 'é"\\'] } },
        { id: 'id-"2"', pattern: '{"cmd":"sum"}', ttl: 0, headers: { 'x-tenant': 'a"b' }, data: null },
        { id: 'r3', pattern: 'p', ttl: 1.5, headers: {}, data: () => 1 },
      ];
      const elements = cases.map((request) => encodeCompactRequest(encodeRequestParts({ ...shared, ...request } as unknown as RequestEnvelope), request.ttl));
      expect(elements[0]).toBe('["r1","resource.find",4998,{"x":[1,"é\\"\\\\"]}]');
      expect(elements[1]).toBe('["id-\\"2\\"","{\\"cmd\\":\\"sum\\"}",0,null,{"x-tenant":"a\\"b"}]');
      const ping = '{"v":1,"kind":"ping","id":"p1","from":"caller é","replyTo":"rb:inbox:caller.x"}';
      const message = encodeHeadedBatch(head, [elements[0]!, ping, elements[1]!, elements[2]!]);
      expect(message.startsWith('[{"v":1,"kind":"requests","from":"caller é","replyTo":"rb:inbox:caller.x","cr":1,"sent":1796000000000},')).toBe(true);
      const decoded = decodeMessage(message, 'chan');
      expect(decoded.rejected).toEqual([]);
      expect(decoded.envelopes.map((envelope) => ({ ...envelope }))).toEqual([
        { ...shared, id: 'r1', pattern: 'resource.find', ttl: 4998, headers: {}, data: { x: [1, 'é"\\'] } },
        JSON.parse(ping),
        { ...shared, id: 'id-"2"', pattern: '{"cmd":"sum"}', ttl: 0, headers: { 'x-tenant': 'a"b' }, data: null },
        // What JSON cannot represent travels as null, which receivers read as no data.
        { ...shared, id: 'r3', pattern: 'p', ttl: 1.5, headers: {}, data: null },
      ]);
      // Each reads exactly as the object form would, and passes the one validator.
      for (const envelope of decoded.envelopes) expect(validateEnvelope(JSON.parse(JSON.stringify(envelope)))).not.toEqual(expect.any(String));
    });

    it('refuses a malformed compact request at its head\'s replyTo when its id can be read, and keeps the rest of the batch', () => {
      const good = '["r0","p",10,1]';
      const bad: Array<[string, string, string | undefined]> = [
        ['["r1","p",10]', 'not an array of 3', 'r1'],
        ['["r1","p",10,1,{},2]', 'not an array of 6', 'r1'],
        ['[1,"p",10,1]', 'id must be a string', undefined],
        [`["${'i'.repeat(129)}","p",10,1]`, 'id must be a string', undefined],
        ['["r1","",10,1]', 'pattern must be a string', 'r1'],
        ['["r1","p",-1,1]', 'ttl must be a non-negative number', 'r1'],
        ['["r1","p","10",1]', 'ttl must be a non-negative number', 'r1'],
        ['["r1","p",10,1,{"h":1}]', 'header "h"', 'r1'],
        ['["r1","p",10,1,{"__proto__":"x"}]', '__proto__', 'r1'],
        ['[]', 'not an array of 0', undefined],
      ];
      for (const [element, reason, refusedId] of bad) {
        const decoded = decodeMessage(encodeHeadedBatch(head, [element, good]), 'chan');
        expect(decoded.envelopes.map((envelope) => envelope.id)).toEqual(['r0']);
        expect(decoded.rejected).toHaveLength(1);
        expect(decoded.rejected[0]!.error.message).toContain('batch element 1');
        expect(decoded.rejected[0]!.error.message).toContain(reason);
        expect(decoded.rejected[0]!.refusable).toEqual(refusedId === undefined ? undefined : { id: refusedId, replyTo: 'rb:inbox:caller.x', code: 'BUFFER_BAD_REQUEST', reason: expect.stringContaining(reason) });
      }
    });

    it('drops every compact request after a malformed head, and a head anywhere but first', () => {
      const heads: Array<[string, string]> = [
        ['{"v":2,"kind":"requests","from":"a","replyTo":"rb:inbox:a"}', 'unsupported protocol version'],
        ['{"v":1,"kind":"requests","replyTo":"rb:inbox:a"}', '"from"'],
        ['{"v":1,"kind":"requests","from":"a"}', '"replyTo"'],
        ['{"v":1,"kind":"requests","from":"a","replyTo":"rb:inbox:a","sent":"now"}', '"sent"'],
      ];
      const ping = '{"v":1,"kind":"ping","id":"p1","from":"a","replyTo":"rb:inbox:a"}';
      for (const [bad, reason] of heads) {
        const decoded = decodeMessage(`[${bad},["r1","p",10,1],${ping}]`, 'chan');
        expect(decoded.envelopes.map((envelope) => envelope.kind)).toEqual(['ping']);
        expect(decoded.rejected.map(({ error }) => error.message)).toEqual([expect.stringContaining(reason), expect.stringContaining('needs a valid request head')]);
        for (const { refusable } of decoded.rejected) expect(refusable).toBeUndefined();
      }
      // Not first: the head is no envelope, and the arrays are compact replies (these are not).
      const late = decodeMessage(`[${ping},${head},["r1","p",10,1]]`, 'chan');
      expect(late.envelopes.map((envelope) => envelope.kind)).toEqual(['ping']);
      expect(late.rejected.map(({ error }) => error.message)).toEqual([expect.stringContaining('batch element 1'), expect.stringContaining('compact reply')]);
      // A head alone, as a message of its own, is no envelope either.
      expect(decodeMessage(head, 'chan')).toEqual({ envelopes: [], rejected: [{ error: expect.any(BadMessageError) }] });
    });

    it('reads seeded random batches of compact requests, good and broken, without throwing or letting a bad one through', () => {
      const values: unknown[] = [null, 0, -1, 1.5, true, '', 'x', 'é"\\', [], [1, [2]], {}, { a: 'b' }, { a: 1 }, 'i'.repeat(129), 'p'.repeat(1025), 2 ** 53];
      forSeeds((random) => {
        const pick = <T>(list: readonly T[]): T => list[random.int(0, list.length - 1)]!;
        const elements: unknown[] = [];
        for (let index = random.int(1, 40); index > 0; index--) {
          const good: unknown[] = [`r${random.int(0, 9)}`, `p${random.int(0, 9)}`, random.int(0, 5000), pick(values)];
          if (random.float() < 0.3) good.push({ h: `v${random.int(0, 9)}` });
          // Half of them broken: one position replaced, one element added or removed, or not an array.
          const broken = random.float() < 0.5;
          if (broken) {
            const how = random.int(0, 3);
            if (how === 0) good[random.int(0, good.length - 1)] = pick(values);
            else if (how === 1) good.push(pick(values), pick(values));
            else if (how === 2) good.splice(random.int(0, 3), 1);
            else elements.push({ v: 1, kind: pick(['ping', 'who', 'nope']), id: 'x', from: 'a', replyTo: 'rb:inbox:a' });
          }
          if (!broken || random.int(0, 3) !== 3 || elements.length === 0) elements.push(good);
        }
        return [`[${head},${elements.map((element) => JSON.stringify(element)).join(',')}]`, (message) => checkRequestBatch(message, elements)];
      });
    });

    function checkRequestBatch(message: string, elements: unknown[]): void {
      const decoded = decodeMessage(message, 'chan');
      expect(decoded.envelopes.length + decoded.rejected.length).toBe(elements.length);
      const bounded = (value: unknown, max: number): boolean => typeof value === 'string' && value.length >= 1 && value.length <= max;
      const goodHeaders = (value: unknown): boolean => value === undefined || value === null || (typeof value === 'object' && !Array.isArray(value) && Object.values(value).every((item) => typeof item === 'string'));
      const expected = elements.flatMap((element) => {
        if (!Array.isArray(element)) {
          const copy: unknown = JSON.parse(JSON.stringify(element));
          return typeof validateEnvelope(copy) === 'string' ? [] : [copy];
        }
        if (element.length !== 4 && element.length !== 5) return [];
        const [id, pattern, ttl, data, headers] = element;
        if (!bounded(id, 128) || !bounded(pattern, 1024) || typeof ttl !== 'number' || ttl < 0 || !goodHeaders(headers)) return [];
        return [{ ...shared, id, pattern, ttl, data, headers: headers ?? {} }];
      });
      expect(decoded.envelopes.map((envelope) => ({ ...envelope }))).toEqual(expected);
      for (const { error, refusable } of decoded.rejected) {
        expect(error).toBeInstanceOf(BadMessageError);
        if (refusable !== undefined) expect(refusable.replyTo).toBe('rb:inbox:caller.x');
      }
    }
  });
});
