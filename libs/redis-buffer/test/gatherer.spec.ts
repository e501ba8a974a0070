import type { ReplyEnvelope } from '../src/core/wire/envelope.js';
import { BufferTimeoutError } from '../src/core/errors/buffer-timeout.error.js';
import { NoRespondersError } from '../src/core/errors/no-responders.error.js';
import { Gatherer } from '../src/core/gather/gatherer.js';
import type { ResolvedCallOptions } from '../src/core/options.js';
import type { BufferReply, GatherResult } from '../src/core/gather/reply.js';
import { FakeClock } from './fake-clock.js';
import { nameMissing } from '../src/core/gather/whole-or-named.js';

function reply(from: string, seq: number, fields: { data?: unknown; error?: unknown; done?: boolean }): ReplyEnvelope {
  return { v: 1, kind: 'reply', id: 'r1', from, seq, done: fields.done ?? true, ...fields } as ReplyEnvelope;
}

function setup(rules: Partial<ResolvedCallOptions<unknown>> = {}) {
  const clock = new FakeClock();
  const seen: BufferReply[] = [];
  const outcome: { result?: GatherResult; error?: Error; timedOut?: BufferTimeoutError; calls: number } = { calls: 0 };
  const gatherer = new Gatherer(
    'r1',
    'resource.find',
    { timeout: 1000, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {}, ...rules },
    {
      next: (value) => seen.push(value),
      complete: (result, timedOut) => {
        outcome.calls++;
        outcome.result = result;
        outcome.timedOut = timedOut;
      },
      fail: (error, result) => {
        outcome.calls++;
        outcome.error = error;
        outcome.result = result;
      },
    },
    clock,
  );
  return { clock, seen, outcome, gatherer };
}

describe('Gatherer', () => {
  it('completes with "all" when every receiver Redis counted is done', () => {
    const { gatherer, outcome, seen } = setup();
    gatherer.expect(3);
    gatherer.accept(reply('a', 0, { data: 1 }));
    gatherer.accept(reply('b', 0, { data: 2 }));
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('c', 0, { data: 3 }));
    expect(outcome.result?.completedBy).toBe('all');
    expect(outcome.result?.expected).toBe(3);
    expect(outcome.result?.finished).toBe(3);
    expect(seen.map((r) => r.instanceId)).toEqual(['a', 'b', 'c']);
  });

  it('tracks every instance apart with many of them: streams, duplicates and completion past the first few', () => {
    const { gatherer, outcome, seen } = setup({ timeout: 1000 });
    const ids = Array.from({ length: 20 }, (_, index) => `i${index}`);
    gatherer.expect(ids.length);
    // Each streams two values, then closes; every value is also sent twice (a duplicate delivery).
    for (const id of ids) {
      expect(gatherer.accept(reply(id, 0, { data: `${id}-0`, done: false }))).toBe('accepted');
      expect(gatherer.accept(reply(id, 0, { data: `${id}-0`, done: false }))).toBe('duplicate');
    }
    for (const id of ids) {
      expect(gatherer.accept(reply(id, 1, { data: `${id}-1`, done: false }))).toBe('accepted');
      expect(gatherer.accept(reply(id, 1, { data: `${id}-1`, done: false }))).toBe('duplicate');
    }
    expect(outcome.calls).toBe(0);
    for (const id of ids.slice(0, -1)) expect(gatherer.accept(reply(id, 2, { done: true }))).toBe('accepted');
    expect(gatherer.accept(reply('i3', 3, { data: 'after done', done: true }))).toBe('duplicate');
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('i19', 2, { done: true }));
    expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 20, finished: 20, missing: [] });
    expect(seen).toHaveLength(40);
    expect(outcome.result!.replies).toHaveLength(40);
  });

  it('names every unfinished instance on a timeout, with many of them', () => {
    const { gatherer, outcome, clock } = setup({ timeout: 1000 });
    const ids = Array.from({ length: 12 }, (_, index) => `i${index}`);
    gatherer.expect(ids.length, new Set(ids));
    for (const id of ids) gatherer.accept(reply(id, 0, { data: id, done: !['i2', 'i10', 'i11'].includes(id) }));
    clock.advance(1000);
    expect(outcome.result?.completedBy).toBe('timeout');
    expect([...outcome.result!.missing].sort()).toEqual(['i10', 'i11', 'i2']);
    expect(outcome.result!.missingReasons).toEqual({ i2: 'timeout', i10: 'timeout', i11: 'timeout' });
  });

  describe('sent to more instances than its small table holds', () => {
    const ids = Array.from({ length: 12 }, (_, index) => `i${index}`);

    it('keeps each instance progress by its place in the set it was sent to, and those outside it apart', () => {
      const { gatherer, outcome, seen, clock } = setup({ timeout: 1000 });
      const known = new Set(ids);
      gatherer.sent(known);
      // A stream from i3, a duplicate from i5, an observer x outside the set.
      gatherer.accept(reply('i3', 0, { data: 'a', done: false }));
      for (const id of ids) if (id !== 'i3' && id !== 'i7') gatherer.accept(reply(id, 0, { data: id }));
      expect(gatherer.accept(reply('i5', 0, { data: 'again' }))).toBe('duplicate');
      expect(gatherer.accept(reply('i3', 0, { data: 'again', done: false }))).toBe('duplicate');
      gatherer.accept(reply('x', 0, { data: 'x', done: false }));
      gatherer.expect(13, known);
      expect(gatherer.waitingOn().sort()).toEqual(['i3', 'i7']);
      gatherer.accept(reply('i3', 1, { data: 'b' }));
      expect(gatherer.accept(reply('i3', 2, { data: 'late' }))).toBe('duplicate');
      expect(gatherer.waitingOn()).toEqual(['i7']);
      clock.advance(1000);
      expect(outcome.result).toMatchObject({ completedBy: 'timeout', finished: 11, missing: ['i7', 'x'], missingReasons: { i7: 'timeout', x: 'timeout' } });
      expect(seen.map((r) => (r.ok ? r.data : undefined)).filter((data) => data === 'again' || data === 'late')).toEqual([]);
    });

    it('completes whole when every one of them finished, a second request sharing the same set', () => {
      const known = new Set(ids);
      for (const order of [ids, [...ids].reverse()]) {
        const { gatherer, outcome } = setup();
        gatherer.sent(known);
        gatherer.expect(ids.length, known);
        for (const id of order) gatherer.accept(reply(id, 0, { data: id }));
        expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 12, finished: 12, missing: [], observers: 0 });
        expect(outcome.result!.replies.map((r) => r.instanceId)).toEqual(order);
      }
    });

    it('completes when every one of them finished and Redis counted an observer too, the first replier included', () => {
      const known = new Set(ids);
      for (const countFirst of [true, false]) {
        const { gatherer, outcome, clock } = setup();
        gatherer.sent(known);
        if (countFirst) gatherer.expect(ids.length + 1, known);
        for (const id of ids) gatherer.accept(reply(id, 0, { data: id }));
        if (!countFirst) gatherer.expect(ids.length + 1, known);
        // Every known instance is done: the thirteenth receiver is an observer, not waited for.
        expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 13, finished: 12, missing: [], observers: 1 });
        expect(clock.pendingTimers).toBe(0);
      }
    });
  });

  it('completes when the count arrives after every counted receiver finished and left the view', () => {
    // i0 answered and drained (its bye removed it from the view) before Redis's count reached the
    // caller: no instance known now serves the pattern, yet every receiver Redis counted finished.
    const { gatherer, outcome, clock } = setup();
    gatherer.sent(new Set(['i0']));
    gatherer.accept(reply('i0', 0, { data: 'answered' }));
    expect(outcome.calls).toBe(0);
    gatherer.expect(1, new Set());
    expect(outcome.error).toBeUndefined();
    expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, missing: [] });
    expect(clock.pendingTimers).toBe(0);
  });

  it('waits for the receiver count when replies arrive before it', () => {
    const { gatherer, outcome } = setup();
    gatherer.accept(reply('a', 0, { data: 1 }));
    gatherer.accept(reply('b', 0, { data: 2 }));
    expect(outcome.calls).toBe(0);
    gatherer.expect(2);
    expect(outcome.result?.completedBy).toBe('all');
  });

  it('fails at once with NoRespondersError when nobody received the request', () => {
    const { gatherer, outcome, clock } = setup();
    gatherer.expect(0);
    expect(outcome.error).toBeInstanceOf(NoRespondersError);
    expect((outcome.error as NoRespondersError).code).toBe('BUFFER_NO_RESPONDERS');
    expect(clock.pendingTimers).toBe(0);
  });

  it('completes with "quorum" after that many replies', () => {
    const { gatherer, outcome } = setup({ quorum: 2 });
    gatherer.expect(5);
    gatherer.accept(reply('a', 0, { data: 1 }));
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('b', 0, { error: { message: 'x' } }));
    expect(outcome.result?.completedBy).toBe('quorum');
    expect(outcome.result?.replies).toHaveLength(1);
    expect(outcome.result?.errors).toHaveLength(1);
  });

  it('completes with "until" right after the matching reply', () => {
    const { gatherer, outcome, seen } = setup({ until: (r) => r.ok && r.data === 'mine' });
    gatherer.expect(3);
    gatherer.accept(reply('a', 0, { data: null }));
    gatherer.accept(reply('b', 0, { data: 'mine' }));
    expect(outcome.result?.completedBy).toBe('until');
    expect(seen).toHaveLength(2);
    expect(gatherer.accept(reply('c', 0, { data: null }))).toBe('late');
  });

  it('completes with "stall" when no reply came for the stall time after the last one', () => {
    const { gatherer, outcome, clock } = setup({ stall: 100 });
    gatherer.expect(3);
    clock.advance(500);
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('a', 0, { data: 1 }));
    clock.advance(90);
    gatherer.accept(reply('b', 0, { data: 2 }));
    clock.advance(90);
    expect(outcome.calls).toBe(0);
    clock.advance(10);
    expect(outcome.result?.completedBy).toBe('stall');
    expect(outcome.result?.replies).toHaveLength(2);
  });

  it('ends by the timeout whatever the other rules say, with the partial result and its error', () => {
    const { gatherer, outcome, clock } = setup({ stall: 300, timeout: 1000 });
    gatherer.expect(3);
    for (let t = 0; t < 12; t++) {
      gatherer.accept(reply('a', t, { data: t, done: false }));
      clock.advance(100);
    }
    expect(outcome.calls).toBe(1);
    expect(outcome.result?.completedBy).toBe('timeout');
    expect(outcome.result?.expected).toBe(3);
    expect(outcome.result?.finished).toBe(0);
    expect(outcome.timedOut).toBeInstanceOf(BufferTimeoutError);
    expect(outcome.timedOut?.replies).toHaveLength(10);
    expect(outcome.timedOut?.expected).toBe(3);
  });

  it('holds a rule decided before the receiver count until the count arrives, so the result carries it', () => {
    const { gatherer, outcome, seen } = setup({ quorum: 1 });
    gatherer.accept(reply('a', 0, { data: 1 }));
    expect(outcome.calls).toBe(0);
    expect(gatherer.accept(reply('b', 0, { data: 2 }))).toBe('late');
    gatherer.expect(3);
    expect(outcome.result?.completedBy).toBe('quorum');
    expect(outcome.result?.expected).toBe(3);
    expect(seen).toHaveLength(1);
  });

  it('a decided rule still ends by the timeout when the count never comes', () => {
    const { gatherer, outcome, clock } = setup({ until: () => true, timeout: 500 });
    gatherer.accept(reply('a', 0, { data: 1 }));
    clock.advance(500);
    expect(outcome.result?.completedBy).toBe('until');
    expect(outcome.result?.expected).toBeUndefined();
    expect(outcome.result?.redis).toBe('unanswered');
  });

  it('counts a duplicate (same instance, same sequence) once', () => {
    const { gatherer, outcome, seen } = setup();
    gatherer.expect(2);
    expect(gatherer.accept(reply('a', 0, { data: 1 }))).toBe('accepted');
    expect(gatherer.accept(reply('a', 0, { data: 1 }))).toBe('duplicate');
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('b', 0, { data: 2 }));
    expect(seen).toHaveLength(2);
    expect(outcome.result?.finished).toBe(2);
  });

  it('takes every value of a streaming instance and counts it done at the end marker', () => {
    const { gatherer, outcome, seen } = setup();
    gatherer.expect(1);
    gatherer.accept(reply('a', 0, { data: 'x', done: false }));
    gatherer.accept(reply('a', 1, { data: 'y', done: false }));
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('a', 2, { done: true }));
    expect(seen.map((r) => (r.ok ? r.data : undefined))).toEqual(['x', 'y']);
    expect(outcome.result?.completedBy).toBe('all');
  });

  it('drops replies after completion as late', () => {
    const { gatherer } = setup();
    gatherer.expect(1);
    gatherer.accept(reply('a', 0, { data: 1 }));
    expect(gatherer.accept(reply('b', 0, { data: 2 }))).toBe('late');
  });

  it('cancel clears every timer and tells the sink nothing', () => {
    const { gatherer, outcome, clock } = setup({ stall: 100 });
    gatherer.accept(reply('a', 0, { data: 1, done: false }));
    expect(clock.pendingTimers).toBe(2);
    gatherer.cancel();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(5000);
    expect(outcome.calls).toBe(0);
  });

  it('fail ends the request once, with the replies so far', () => {
    const { gatherer, outcome, clock } = setup();
    gatherer.accept(reply('a', 0, { data: 1 }));
    gatherer.fail(new Error('gone'));
    gatherer.fail(new Error('again'));
    expect(outcome.calls).toBe(1);
    expect(outcome.error?.message).toBe('gone');
    expect(outcome.result?.replies).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('carries the time the caller still waits', () => {
    const { gatherer, clock } = setup({ timeout: 1234 });
    expect(gatherer.remainingMs()).toBe(1234);
    clock.advance(234);
    expect(gatherer.remainingMs()).toBe(1000);
  });

  describe('with the instances it knows received the request', () => {
    it('completes when every known instance is done, not counting an observer', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(3, new Set(['a', 'b']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      expect(outcome.calls).toBe(0);
      gatherer.accept(reply('b', 0, { data: 2 }));
      expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, observers: 1, missing: [] });
    });

    it('names an instance it did not know that started answering and did not finish, though every counted receiver finished', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(1, new Set(['a']));
      gatherer.accept(reply('x', 0, { data: 'part', done: false }));
      gatherer.accept(reply('a', 0, { data: 1 }));
      expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, missing: ['x'], missingReasons: { x: 'not-counted' }, observers: 0 });
    });

    it('names nobody, in a fresh list each time, when every known instance and every counted receiver finished', () => {
      const first = setup();
      first.gatherer.expect(2, new Set(['a', 'b']));
      first.gatherer.accept(reply('a', 0, { data: 1, done: false }));
      first.gatherer.accept(reply('a', 1, { done: true }));
      first.gatherer.accept(reply('b', 0, { data: 2 }));
      expect(first.outcome.result).toMatchObject({ completedBy: 'all', expected: 2, finished: 2, missing: [], missingReasons: {}, observers: 0 });
      const second = setup();
      second.gatherer.expect(1, new Set(['a']));
      second.gatherer.accept(reply('a', 0, { data: 1 }));
      expect(second.outcome.result!.missing).not.toBe(first.outcome.result!.missing);
    });

    it('stops waiting for an instance declared silent and names it', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(3, new Set(['a', 'b', 'c']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      gatherer.accept(reply('c', 0, { data: 3 }));
      expect(gatherer.waitingOn()).toEqual(['b']);
      gatherer.instanceGone('b', 'silent');
      expect(outcome.result).toMatchObject({ completedBy: 'all', finished: 2, missing: ['b'], missingReasons: { b: 'silent' }, observers: 0 });
    });

    it('ignores news about an instance that already finished or was never awaited', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(2, new Set(['a', 'b']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      gatherer.instanceGone('a', 'left');
      gatherer.instanceGone('z', 'left');
      expect(outcome.calls).toBe(0);
      gatherer.accept(reply('b', 0, { data: 2 }));
      expect(outcome.result).toMatchObject({ completedBy: 'all', missing: [] });
    });

    it('is not told a restarted instance left when it was sent, or counted, after the new incarnation announced itself', () => {
      const before = setup();
      const after = setup();
      const countedAfter = setup();
      before.gatherer.sent(new Set(['a', 'b']), 4);
      before.gatherer.countedAt(6);
      after.gatherer.sent(new Set(['a', 'b']), 7);
      after.gatherer.countedAt(7);
      countedAfter.gatherer.sent(new Set(['a', 'b']), 4);
      countedAfter.gatherer.countedAt(8);
      for (const { gatherer } of [before, after, countedAfter]) {
        gatherer.expect(2, new Set(['a', 'b']));
        gatherer.accept(reply('b', 0, { data: 2 }));
        // The new incarnation of "a" said hello when the view's mark was 7.
        gatherer.instanceGone('a', 'left', 7);
      }
      expect(before.outcome.result).toMatchObject({ completedBy: 'all', missing: ['a'], missingReasons: { a: 'left' } });
      for (const { gatherer, outcome } of [after, countedAfter]) {
        expect(outcome.calls).toBe(0);
        gatherer.accept(reply('a', 0, { data: 1 }));
        expect(outcome.result).toMatchObject({ completedBy: 'all', finished: 2, missing: [] });
      }
    });

    it('an instance dismissed (nothing vouched for it) that answers after all is not counted twice', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(3, new Set(['a', 'b', 'c']));
      gatherer.instanceDismissed('c');
      gatherer.accept(reply('c', 0, { data: 3 }));
      gatherer.accept(reply('a', 0, { data: 1 }));
      // "b" has not answered: the request still waits for it.
      expect(outcome.calls).toBe(0);
      gatherer.accept(reply('b', 0, { data: 2 }));
      expect(outcome.result).toMatchObject({ completedBy: 'all', finished: 3, missing: [] });
    });

    it('names the instances that had not finished at the timeout', () => {
      const { gatherer, outcome, clock } = setup({ timeout: 100 });
      gatherer.expect(2, new Set(['a', 'b']));
      gatherer.accept(reply('a', 0, { data: 1, done: false }));
      clock.advance(100);
      expect(outcome.result).toMatchObject({ completedBy: 'timeout', missing: ['a', 'b'], missingReasons: { a: 'timeout', b: 'timeout' } });
      expect(outcome.timedOut?.missing).toEqual(['a', 'b']);
    });

    it('fails at once with NoRespondersError when Redis counted only subscribers that are not instances', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(2, new Set());
      expect(outcome.error).toBeInstanceOf(NoRespondersError);
      expect((outcome.error as NoRespondersError).observers).toBe(2);
    });

    it('with a view to ask, waits for a who round before calling counted receivers of a pattern it knows no instance for observers', () => {
      class AskingGatherer extends Gatherer<unknown> {
        asked = 0;
        protected override confirmMembers(): boolean {
          this.asked++;
          return true;
        }
      }
      const outcomes: Array<{ result: GatherResult; error?: Error }> = [];
      const sink = { next: () => undefined, complete: (result: GatherResult) => void outcomes.push({ result }), fail: (error: Error, result: GatherResult) => void outcomes.push({ result, error }) };
      const rules = { timeout: 1000, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} };
      const clock = new FakeClock();
      // Only observers: the round finds no instance for the pattern either.
      const observed = new AskingGatherer('r1', 'p', rules, sink, clock);
      observed.expect(2, new Set());
      expect([observed.asked, outcomes.length]).toEqual([1, 0]);
      observed.adoptAwaited(new Set(), new Map());
      expect(outcomes[0]!.error).toBeInstanceOf(NoRespondersError);
      expect((outcomes[0]!.error as NoRespondersError).observers).toBe(2);
      // An instance whose hello had not arrived: the round finds it, and the request waits for it.
      const raced = new AskingGatherer('r2', 'p', rules, sink, clock);
      raced.expect(1, new Set());
      raced.adoptAwaited(new Set(['n']), new Map());
      expect(outcomes).toHaveLength(1);
      raced.accept({ ...reply('n', 0, { data: 1 }), id: 'r2' });
      expect(outcomes[1]).toMatchObject({ result: { completedBy: 'all', expected: 1, finished: 1, missing: [] } });
      // Its reply before the round ends: Redis's count completes it meanwhile.
      const early = new AskingGatherer('r3', 'p', rules, sink, clock);
      early.expect(1, new Set());
      early.accept({ ...reply('n', 0, { data: 1 }), id: 'r3' });
      expect(outcomes[2]).toMatchObject({ result: { completedBy: 'all', expected: 1, finished: 1, missing: [] } });
      expect(outcomes[2]!.error).toBeUndefined();
    });

    it('without a view, Redis\'s count alone decides', () => {
      const { gatherer, outcome, clock } = setup({ timeout: 100 });
      gatherer.expect(2, undefined);
      expect(outcome.calls).toBe(0);
      clock.advance(100);
      expect(outcome.result).toMatchObject({ completedBy: 'timeout', expected: 2, finished: 0 });
    });

    it('names an instance known to be silent at once, without waiting for it', () => {
      const { gatherer, outcome } = setup();
      gatherer.expect(2, new Set(['a', 'b']), new Map([['b', 'silent']]));
      gatherer.accept(reply('a', 0, { data: 1 }));
      expect(outcome.result).toMatchObject({ completedBy: 'all', finished: 1, missing: ['b'], missingReasons: { b: 'silent' } });
    });
  });

  it('counts quorum in instances that finished, not in stream items', () => {
    const { gatherer, outcome } = setup({ quorum: 2 });
    gatherer.expect(3);
    gatherer.accept(reply('a', 0, { data: 1, done: false }));
    gatherer.accept(reply('a', 1, { data: 2, done: false }));
    gatherer.accept(reply('a', 2, { data: 3, done: false }));
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('a', 3, { done: true }));
    gatherer.accept(reply('b', 0, { data: 9 }));
    expect(outcome.result).toMatchObject({ completedBy: 'quorum', finished: 2 });
  });

  it('ends the request with a typed error when "until" throws, and nothing else', () => {
    const { gatherer, outcome } = setup({ until: () => { throw new Error('bad predicate'); } });
    gatherer.expect(2);
    expect(() => gatherer.accept(reply('a', 0, { data: 1 }))).not.toThrow();
    expect(outcome.error).toMatchObject({ code: 'BUFFER_CALLBACK_FAILED', callback: 'until' });
    expect((outcome.error as Error).cause).toEqual(new Error('bad predicate'));
  });

  it('marks a refusal as such', () => {
    const { gatherer, seen } = setup();
    gatherer.expect(1);
    gatherer.accept({ v: 1, kind: 'reply', id: 'r1', from: 'a', seq: 0, done: true, refused: true, error: { code: 'BUFFER_EXPIRED' } });
    expect(seen[0]).toMatchObject({ ok: false, refused: true, error: { code: 'BUFFER_EXPIRED' } });
  });

  describe('never silently partial', () => {
    it('names, as not counted, a known instance Redis did not count once every counted receiver finished', () => {
      const { gatherer, outcome } = setup();
      // Classic PUBLISH on one node of a cluster: Redis counted one receiver, the view knows three.
      gatherer.expect(1, new Set(['a', 'b', 'c']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, missing: ['b', 'c'], missingReasons: { b: 'not-counted', c: 'not-counted' }, redis: 'answered' });
    });

    it('says Redis did not answer, and names every known instance not finished, when the PUBLISH never returned', () => {
      const { gatherer, outcome, clock } = setup({ timeout: 300 });
      gatherer.sent(new Set(['a', 'b', 'c']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      clock.advance(300);
      expect(outcome.result).toMatchObject({ completedBy: 'timeout', expected: undefined, redis: 'unanswered', finished: 1, missing: ['b', 'c'], missingReasons: { b: 'redis-unanswered', c: 'redis-unanswered' } });
      expect(outcome.timedOut?.message).toContain('Redis did not answer');
      expect(outcome.timedOut?.redis).toBe('unanswered');
    });

    it('sent before the view was usable and never answered by Redis, names at the timeout whom the view vouches for by then', () => {
      class ViewGatherer extends Gatherer<unknown> {
        protected override knownServing(): ReadonlySet<string> {
          return new Set(['a', 'b']);
        }
      }
      const outcomes: GatherResult[] = [];
      const sink = { next: () => undefined, complete: (result: GatherResult) => void outcomes.push(result), fail: () => undefined };
      const clock = new FakeClock();
      const gatherer = new ViewGatherer('r1', 'p', { timeout: 150, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} }, sink, clock);
      gatherer.sent(undefined);
      clock.advance(150);
      expect(outcomes[0]).toMatchObject({ completedBy: 'timeout', expected: undefined, redis: 'unanswered', missing: ['a', 'b'], missingReasons: { a: 'redis-unanswered', b: 'redis-unanswered' } });
      // Counted by Redis, with no awaited set either: the timeout names them too; a count reached does not.
      const counted = new ViewGatherer('r2', 'p', { timeout: 150, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} }, sink, clock);
      counted.sent(undefined);
      counted.expect(3, undefined);
      counted.accept({ ...reply('a', 0, { data: 1 }), id: 'r2' });
      clock.advance(150);
      expect(outcomes[1]).toMatchObject({ completedBy: 'timeout', expected: 3, finished: 1, missing: ['b'], observers: 1 });
      const whole = new ViewGatherer('r3', 'p', { timeout: 150, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} }, sink, clock);
      whole.sent(undefined);
      whole.expect(1, undefined);
      whole.accept({ ...reply('a', 0, { data: 1 }), id: 'r3' });
      expect(outcomes[2]).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, missing: [] });
    });

    it('sent before the view was usable, names a member only heard of at a stall when Redis counted a receiver that did not answer', () => {
      class ViewGatherer extends Gatherer<unknown> {
        protected override knownServing(): ReadonlySet<string> {
          return new Set(['heard-of', 'ghost']);
        }
        override isVouched(): boolean {
          return false;
        }
      }
      const outcomes: GatherResult[] = [];
      const sink = { next: () => undefined, complete: (result: GatherResult) => void outcomes.push(result), fail: () => undefined };
      const clock = new FakeClock();
      const gatherer = new ViewGatherer('r1', 'p', { timeout: 150, quorum: undefined, until: undefined, stall: 30, to: undefined, headers: {} }, sink, clock);
      gatherer.sent(undefined);
      gatherer.expect(2, undefined);
      gatherer.accept(reply('a', 0, { data: 1, done: false }));
      clock.advance(30);
      // "a" started and did not finish; one more counted receiver: one of those only heard of, not both.
      expect(outcomes[0]).toMatchObject({ completedBy: 'stall', expected: 2, missing: ['a', 'heard-of'], observers: 0 });
    });

    it('names "joining" an instance that announced itself after the count, when the count has room for it', () => {
      // Redis counted 2; the caller awaited only "a"; "late" said hello (it had frozen between
      // subscribing and announcing itself) after the count came, and has not answered.
      let serving = new Set(['a', 'late']);
      class ViewGatherer extends Gatherer<unknown> {
        protected override knownServing(): ReadonlySet<string> {
          return serving;
        }
      }
      const outcomes: GatherResult[] = [];
      const sink = { next: () => undefined, complete: (result: GatherResult) => void outcomes.push(result), fail: () => undefined };
      const clock = new FakeClock();
      const rules = { timeout: 500, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} };
      const gatherer = new ViewGatherer('r1', 'p', rules, sink, clock);
      gatherer.sent(new Set(['a']));
      gatherer.expect(2, new Set(['a']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      expect(outcomes[0]).toMatchObject({ completedBy: 'all', expected: 2, finished: 1, missing: ['late'], missingReasons: { late: 'joining' }, observers: 0 });
      // No room in the count (every counted receiver finished): a member that joined later is not named.
      const full = new ViewGatherer('r2', 'p', rules, sink, clock);
      full.sent(new Set(['a']));
      full.expect(1, new Set(['a']));
      full.accept({ ...reply('a', 0, { data: 1 }), id: 'r2' });
      expect(outcomes[1]).toMatchObject({ completedBy: 'all', expected: 1, missing: [], observers: 0 });
      // Nobody joined: the extra counted receiver is an observer, as before.
      serving = new Set(['a']);
      const observed = new ViewGatherer('r3', 'p', rules, sink, clock);
      observed.sent(new Set(['a']));
      observed.expect(2, new Set(['a']));
      observed.accept({ ...reply('a', 0, { data: 1 }), id: 'r3' });
      expect(outcomes[2]).toMatchObject({ completedBy: 'all', expected: 2, missing: [], observers: 1 });
    });

    it('an instance named unreachable takes no room in the count: a counted receiver that did not answer is still named', () => {
      // As the gatherer judges: finished or taken for gone.
      const finished = new Set(['a', 'b', 'u']);
      const { missingReasons } = nameMissing({
        completedBy: 'timeout',
        redis: 'answered',
        expected: 3,
        finished: 2,
        gone: new Map([['u', 'unreachable']]),
        newcomers: undefined,
        known: new Set(['a', 'b', 'u']),
        startedUnfinished: [],
        judge: { isSettled: (id) => finished.has(id), isVouched: () => true, servingNow: () => new Set(['a', 'b', 'u', 'late']) },
      });
      expect(missingReasons).toEqual({ u: 'unreachable', late: 'joining' });
    });

    it('a stall decided while the count was on its way ends "all" when the count shows every receiver had finished', () => {
      const { gatherer, outcome, clock } = setup({ stall: 20, timeout: 300 });
      gatherer.sent(new Set(['a']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      clock.advance(20);
      expect(outcome.calls).toBe(0);
      gatherer.expect(1, new Set(['a']));
      expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, missing: [] });
    });

    it('does not end by "stall" before Redis said how many received the request', () => {
      const { gatherer, outcome, clock } = setup({ stall: 50, timeout: 300 });
      gatherer.sent(new Set(['a', 'b']));
      gatherer.accept(reply('a', 0, { data: 1 }));
      clock.advance(300);
      expect(outcome.result).toMatchObject({ completedBy: 'timeout', redis: 'unanswered', missing: ['b'] });
    });

    it('never names a member nothing vouched for (a forged hello), whether the count is reached or the request times out', () => {
      class ViewGatherer extends Gatherer<unknown> {
        override isVouched(instanceId: string): boolean {
          return instanceId !== 'ghost';
        }
      }
      const outcomes: GatherResult[] = [];
      const sink = { next: () => undefined, complete: (result: GatherResult) => void outcomes.push(result), fail: () => undefined };
      const rules = { timeout: 100, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} };
      const clock = new FakeClock();
      const whole = new ViewGatherer('r1', 'p', rules, sink, clock);
      whole.expect(1, new Set(['a', 'ghost']));
      whole.accept(reply('a', 0, { data: 1 }));
      const partial = new ViewGatherer('r1', 'p', rules, sink, clock);
      partial.expect(2, new Set(['a', 'b', 'ghost']));
      partial.accept(reply('a', 0, { data: 1 }));
      clock.advance(100);
      expect(outcomes.map(({ completedBy, missing }) => ({ completedBy, missing }))).toEqual([
        { completedBy: 'all', missing: [] },
        { completedBy: 'timeout', missing: ['b'] },
      ]);
    });

    it('names a member only heard of when Redis counted a receiver that neither finished nor is named otherwise', () => {
      class ViewGatherer extends Gatherer<unknown> {
        override isVouched(instanceId: string): boolean {
          return instanceId !== 'heard-of';
        }
      }
      const outcomes: GatherResult[] = [];
      const sink = { next: () => undefined, complete: (result: GatherResult) => void outcomes.push(result), fail: () => undefined };
      const clock = new FakeClock();
      // A frozen instance whose hello came unasked: it never answered a who round, but Redis counted it.
      const stalled = new ViewGatherer('r1', 'p', { timeout: 100, quorum: undefined, until: undefined, stall: 20, to: undefined, headers: {} }, sink, clock);
      stalled.expect(2, new Set(['a', 'heard-of']));
      stalled.accept(reply('a', 0, { data: 1 }));
      clock.advance(20);
      expect(outcomes[0]).toMatchObject({ completedBy: 'stall', expected: 2, finished: 1, missing: ['heard-of'], missingReasons: { 'heard-of': 'stall' }, observers: 0 });
    });

    it('waits for an instance that said hello while the request was on its way, unless Redis\'s count shows it was not a receiver', () => {
      const counted = setup();
      counted.gatherer.expect(2, new Set(['a', 'n']), new Map(), new Set(['n']));
      counted.gatherer.accept(reply('a', 0, { data: 1 }));
      expect(counted.outcome.calls).toBe(0);
      counted.gatherer.accept(reply('n', 0, { data: 2 }));
      expect(counted.outcome.result).toMatchObject({ completedBy: 'all', finished: 2, missing: [] });
      // Redis counted one receiver: the newcomer subscribed after the PUBLISH; not named.
      const after = setup();
      after.gatherer.expect(1, new Set(['a', 'n']), new Map(), new Set(['n']));
      after.gatherer.accept(reply('a', 0, { data: 1 }));
      expect(after.outcome.result).toMatchObject({ completedBy: 'all', finished: 1, missing: [], observers: 0 });
      // Counted, and silent at the timeout: named, as far as the count leaves room.
      const silent = setup({ timeout: 100 });
      silent.gatherer.expect(2, new Set(['a', 'n']), new Map(), new Set(['n']));
      silent.gatherer.accept(reply('a', 0, { data: 1 }));
      silent.clock.advance(100);
      expect(silent.outcome.result).toMatchObject({ completedBy: 'timeout', missing: ['n'], missingReasons: { n: 'timeout' } });
    });

    it('keeps the invariant over thousands of seeded schedules', () => {
      const seed = Number(process.env.GATHER_SEED ?? 20261204);
      let state = seed >>> 0;
      const random = (): number => {
        // mulberry32: small, seedable, good enough to spread schedules.
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      for (let run = 0; run < 3000; run++) {
        const { gatherer, outcome, clock } = setup({ timeout: 1000, stall: random() < 0.2 ? 150 : undefined });
        const known = Array.from({ length: 1 + Math.floor(random() * 5) }, (_, index) => `i${index}`);
        // Who really received it: the known instances Redis counted (some may not be), plus observers.
        const received = known.filter(() => random() < 0.8);
        const observers = random() < 0.2 ? 1 : 0;
        const redisAnswers = random() < 0.9;
        const frozen = new Set(received.filter(() => random() < 0.15));
        const events: Array<{ at: number; run: () => void }> = [];
        gatherer.sent(new Set(known));
        if (redisAnswers) events.push({ at: Math.floor(random() * 100), run: () => gatherer.expect(received.length + observers, new Set(known)) });
        for (const id of received) {
          if (frozen.has(id)) {
            if (random() < 0.7) events.push({ at: 200 + Math.floor(random() * 600), run: () => gatherer.instanceGone(id, 'silent') });
            continue;
          }
          const at = Math.floor(random() * 900);
          events.push({ at, run: () => gatherer.accept(reply(id, 0, { data: id, done: random() < 0.5 })) });
          events.push({ at: at + Math.floor(random() * 100), run: () => gatherer.accept(reply(id, 1, { done: true })) });
        }
        if (random() < 0.1) events.push({ at: Math.floor(random() * 900), run: () => gatherer.instanceGone(pick(known), 'left') });
        events.sort((a, b) => a.at - b.at);
        let now = 0;
        for (const event of events) {
          clock.advance(event.at - now);
          now = event.at;
          event.run();
        }
        clock.advance(2000);
        const result = outcome.result!;
        const context = `seed ${seed}, run ${run}: ${JSON.stringify({ known, received, observers, redisAnswers, frozen: [...frozen], result: { ...result, replies: result.replies.length } })}`;
        expect({ context, calls: outcome.calls }).toEqual({ context, calls: 1 });
        expect({ context, late: result.elapsedMs <= 1000 }).toEqual({ context, late: true });
        const finishedIds = new Set([...received].filter((id) => !frozen.has(id)));
        if (outcome.error !== undefined) continue;
        if (!redisAnswers) expect({ context, redis: result.redis, completedBy: result.completedBy }).toEqual({ context, redis: 'unanswered', completedBy: 'timeout' });
        const claimsWhole = (result.completedBy === 'all' || result.completedBy === 'stall') && result.missing.length === 0;
        if (claimsWhole) {
          // Whole means whole: every known instance and every counted receiver finished (or is an observer).
          const unfinished = known.filter((id) => !finishedIds.has(id) || result.replies.every((r) => r.instanceId !== id));
          expect({ context, unfinished }).toEqual({ context, unfinished: [] });
          expect({ context, accounted: result.finished + result.observers >= result.expected! }).toEqual({ context, accounted: true });
        }
        if (result.completedBy !== 'quorum' && result.completedBy !== 'until') {
          // Every known instance that sent nothing is named.
          const unnamed = known.filter((id) => !result.replies.some((r) => r.instanceId === id) && !result.missing.includes(id));
          expect({ context, unnamed }).toEqual({ context, unnamed: [] });
        }
      }
    });
  });
});
