// Topic routing decisions: which bindings a topic reaches and in what order (instance side), which
// extra channels a caller publishes on (caller side), how a gather counts an instance reached on
// several channels, and the repeat-delivery memory.
import type { ReplyEnvelope } from '../src/core/wire/envelope.js';
import { validateEnvelope } from '../src/core/wire/envelope.js';
import { TopicPatternError } from '../src/core/errors/topic-pattern.error.js';
import { Gatherer } from '../src/core/gather/gatherer.js';
import type { GatherResult } from '../src/core/gather/reply.js';
import { WildcardBindings } from '../src/core/membership/wildcard-bindings.js';
import { SeenDeliveries } from '../src/core/respond/seen-deliveries.js';
import { TopicRoutes } from '../src/core/respond/topic-routes.js';
import { checkBindingPattern, compareSpecificity } from '../src/core/wire/topic.js';
import { FakeClock } from './fake-clock.js';

describe('topic routing on an instance', () => {
  it('orders the patterns matching one topic most specific first: a literal before "*", "*" before ">", from the left', () => {
    const patterns = ['order.>', '>', '*.created', 'order.*', 'order.created', '*.>'];
    expect([...patterns].sort(compareSpecificity)).toEqual(['order.created', 'order.*', 'order.>', '*.created', '*.>', '>']);
  });

  it('gives the most specific route for a topic, and every matching route in that order', () => {
    const routes = new TopicRoutes<string>();
    for (const pattern of ['order.>', 'order.*', 'order.created', 'product.*.updated', 'cache.invalidate']) routes.set(pattern, `handler:${pattern}`);
    expect(routes.hasWildcards).toBe(true);
    expect(routes.best('order.created')).toBe('handler:order.created');
    expect(routes.matching('order.created')).toEqual(['handler:order.created', 'handler:order.*', 'handler:order.>']);
    expect(routes.best('order.paid')).toBe('handler:order.*');
    expect(routes.matching('order.paid.eu')).toEqual(['handler:order.>']);
    expect(routes.matching('product.7.updated')).toEqual(['handler:product.*.updated']);
    expect(routes.matching('order')).toEqual([]);
    expect(routes.best('product.7.created')).toBeUndefined();
    // A channel's route takes only what its pattern matches.
    expect(routes.takes('order.*', 'order.paid')).toBe(true);
    expect(routes.takes('order.*', 'order.paid.eu')).toBe(false);
    expect(routes.takes('cache.invalidate', 'cache.invalidate')).toBe(true);
    expect(routes.takes('cache.invalidate', 'cache.other')).toBe(false);
    expect(routes.takes('unbound.*', 'unbound.x')).toBe(false);
  });

  it('has no wildcard to consider when every pattern is exact, or a "*" only inside a longer token', () => {
    const routes = new TopicRoutes<number>();
    routes.set('a.b', 1);
    routes.set('a*.b', 2);
    expect(routes.hasWildcards).toBe(false);
    expect(routes.matching('a*.b')).toEqual([2]);
  });

  it('refuses a malformed wildcard, and a wildcard inside an object pattern, with TopicPatternError', () => {
    for (const bad of ['order.>.x', 'order..*', '.*', 'order.*.']) {
      expect(() => checkBindingPattern(bad)).toThrow(TopicPatternError);
    }
    expect(() => checkBindingPattern({ cmd: 'order.*' })).toThrow(TopicPatternError);
    expect(() => checkBindingPattern({ cmd: 'order.*' })).toThrow(/string patterns only/);
    expect(() => checkBindingPattern({ nested: { list: ['x', 'a.>'] } })).toThrow(TopicPatternError);
    try {
      checkBindingPattern('order.>.x');
    } catch (error) {
      expect((error as TopicPatternError).code).toBe('BUFFER_INVALID_OPTIONS');
    }
    expect(() => checkBindingPattern({ cmd: 'sum*' })).not.toThrow();
    expect(() => checkBindingPattern('order.created')).not.toThrow();
    expect(() => checkBindingPattern('order.*')).not.toThrow();
  });
});

describe('topic routing on a caller', () => {
  it('publishes a topic also on every known wildcard binding that matches it, never twice on its own channel', () => {
    const members: string[][] = [['order.*', 'whoami'], ['order.>', 'order.*'], ['*.created']];
    const bindings = new WildcardBindings(() => members);
    expect([...bindings.routesFor('order.created')].sort()).toEqual(['*.created', 'order.*', 'order.>']);
    expect(bindings.routesFor('order.paid.eu')).toEqual(['order.>']);
    // A topic that is itself a binding goes on that channel once, as its exact channel.
    expect([...bindings.routesFor('order.*')].sort()).toEqual(['order.>']);
    expect(bindings.routesFor('whoami')).toEqual([]);
  });

  it('knows no route while no member binds a wildcard, and learns one after the change that brings it', () => {
    const members: string[][] = [['whoami', 'a*.b']];
    const bindings = new WildcardBindings(() => members);
    const none = bindings.routesFor('whoami');
    expect(none).toEqual([]);
    expect(bindings.routesFor('anything')).toBe(none);
    members.push(['audit.>']);
    // Not before the view says the members changed (a hello or a removal invalidates).
    expect(bindings.routesFor('audit.x')).toEqual([]);
    bindings.invalidate();
    expect(bindings.routesFor('audit.x')).toEqual(['audit.>']);
  });

  it('ignores an invalid wildcard another process announces', () => {
    const bindings = new WildcardBindings(() => [['a.>.b', 'a.*']]);
    expect(bindings.routesFor('a.x')).toEqual(['a.*']);
  });
});

function reply(from: string, fields: Partial<ReplyEnvelope>): ReplyEnvelope {
  return { v: 1, kind: 'reply', id: 'r1', from, seq: 0, done: true, ...fields } as ReplyEnvelope;
}

function topicGatherer(routes: string[]) {
  const clock = new FakeClock();
  const outcome: { result?: GatherResult; calls: number } = { calls: 0 };
  const gatherer = new Gatherer('r1', 'order.created', { timeout: 1000, quorum: undefined, until: undefined, stall: undefined, to: undefined, headers: {} }, { next: () => undefined, complete: (result) => ((outcome.calls++, (outcome.result = result))), fail: (_error, result) => ((outcome.calls++, (outcome.result = result))) }, clock);
  gatherer.routeVia(routes);
  return { gatherer, outcome, clock };
}

describe('a gather to a topic', () => {
  it('counts an instance reached on two channels once: it completes when its repeat delivery is counted, with expected in instances', () => {
    const { gatherer, outcome } = topicGatherer(['order.*']);
    // a binds order.created and order.*: two deliveries; b binds order.* only.
    gatherer.expectExtraDeliveries(new Map([['a', 1]]));
    gatherer.expect(3, new Set(['a', 'b']));
    expect(gatherer.accept(reply('a', { data: 'a' }))).toBe('accepted');
    expect(gatherer.accept(reply('b', { data: 'b' }))).toBe('accepted');
    // Every known instance finished: complete, and whole.
    expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 2, finished: 2, missing: [], observers: 0 });
  });

  it('without a view, completes only once the repeat delivery is counted; a repeated repeat is a duplicate', () => {
    const { gatherer, outcome } = topicGatherer(['order.*']);
    gatherer.expect(2);
    gatherer.accept(reply('a', { data: 'a' }));
    expect(outcome.calls).toBe(0);
    expect(gatherer.accept(reply('a', { repeat: 'order.*' }))).toBe('accepted');
    expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1, missing: [] });
    expect(outcome.result!.replies.map((r) => r.data)).toEqual(['a']);
  });

  it('counts a repeat that arrives before the answer, and drops the same repeat twice', () => {
    const { gatherer, outcome } = topicGatherer(['order.*', 'order.>']);
    gatherer.expect(3);
    expect(gatherer.accept(reply('a', { repeat: 'order.>' }))).toBe('accepted');
    expect(gatherer.accept(reply('a', { repeat: 'order.>' }))).toBe('duplicate');
    expect(gatherer.accept(reply('a', { repeat: 'order.*' }))).toBe('accepted');
    expect(outcome.calls).toBe(0);
    gatherer.accept(reply('a', { data: 1 }));
    expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 1, finished: 1 });
  });

  it('names an instance reached twice that went away, once, and does not count its deliveries as two instances', () => {
    const { gatherer, outcome } = topicGatherer(['order.*']);
    gatherer.expectExtraDeliveries(new Map([['dead', 1]]));
    gatherer.expect(3, new Set(['dead', 'b']));
    gatherer.accept(reply('b', { data: 'b' }));
    gatherer.instanceGone('dead', 'silent');
    expect(outcome.result).toMatchObject({ completedBy: 'all', expected: 2, finished: 1, missing: ['dead'], missingReasons: { dead: 'silent' }, observers: 0 });
  });

  it('says what a timeout is partial against in instances', () => {
    const { gatherer, outcome, clock } = topicGatherer(['order.*']);
    gatherer.expectExtraDeliveries(new Map([['slow', 1]]));
    gatherer.expect(3, new Set(['slow', 'b']));
    gatherer.accept(reply('b', { data: 'b' }));
    clock.advance(1000);
    expect(outcome.result).toMatchObject({ completedBy: 'timeout', expected: 2, finished: 1, missing: ['slow'] });
  });

  it('a repeat reply travels as a done reply with no body; one with a body, or not done, is malformed', () => {
    expect(validateEnvelope({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: true, repeat: 'order.*' })).toMatchObject({ repeat: 'order.*' });
    expect(validateEnvelope({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: true, repeat: 'order.*', data: 1 })).toMatch(/"repeat"/);
    expect(validateEnvelope({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: false, repeat: 'order.*' })).toEqual(expect.any(String));
    expect(validateEnvelope({ v: 1, kind: 'reply', id: 'r', from: 'a', seq: 0, done: true, repeat: '' })).toMatch(/"repeat"/);
  });
});

describe('the repeat-delivery memory', () => {
  it('tells a first delivery from a repeat while it remembers it, and forgets after its time', () => {
    const clock = new FakeClock();
    const seen = new SeenDeliveries(() => clock.now());
    expect(seen.firstTime('inbox\nr1', 100)).toBe(true);
    expect(seen.firstTime('inbox\nr1', 100)).toBe(false);
    expect(seen.firstTime('inbox\nr2', 100)).toBe(true);
    clock.advance(101);
    expect(seen.firstTime('inbox\nr3', 100)).toBe(true);
    expect(seen.size).toBe(1);
  });

  it('is bounded: past its size the oldest are forgotten first', () => {
    const clock = new FakeClock();
    const seen = new SeenDeliveries(() => clock.now(), 3);
    for (const key of ['a', 'b', 'c', 'd']) seen.firstTime(key, 1000);
    expect(seen.size).toBe(3);
    expect(seen.firstTime('a', 1000)).toBe(true);
    expect(seen.firstTime('d', 1000)).toBe(false);
  });
});
