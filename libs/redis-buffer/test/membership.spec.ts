import { MAX_UNVOUCHED_MEMBERS, MembershipView } from '../src/core/membership/membership.js';
import type { HelloEnvelope } from '../src/core/wire/envelope.js';
import type { MissingReason } from '../src/core/gather/reply.js';
import { FakeClock } from './fake-clock.js';

const LIVENESS = 1000;

function hello(from: string, inc: string, fields: { seq?: number; at?: number; draining?: boolean; patterns?: string[]; cq?: 1 } = {}): HelloEnvelope {
  const { patterns = ['p'], ...rest } = fields;
  return { v: 1, kind: 'hello', id: `h-${from}`, from, inc, patterns, events: [], ...rest };
}

/** A view whose pings resolve when the test says (`answer`), as Redis would after a PUBLISH. */
function setup() {
  const clock = new FakeClock();
  const pings: Array<{ id: string; resolve: (receivers: number) => void }> = [];
  const gone: Array<[string, MissingReason]> = [];
  const sentBefore: Array<number | undefined> = [];
  const dismissed: string[] = [];
  const view = new MembershipView(
    {
      ping: (id) => new Promise<number>((resolve) => pings.push({ id, resolve })),
      instanceGone: (id, reason, before) => {
        gone.push([id, reason]);
        sentBefore.push(before);
      },
      instanceDismissed: (id) => dismissed.push(id),
    },
    LIVENESS,
    clock,
  );
  view.markSynced(0);
  const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  /** Instance `a` says hello, a round waits on it and pings it, and Redis delivers the ping. */
  const pingDelivered = async (): Promise<void> => {
    view.hello(hello('a', 'i'), true);
    clock.advance(LIVENESS / 2);
    view.check(['a']);
    pings.shift()!.resolve(1);
    await flush();
  };
  /** One liveness round a quarter of the bound later, waiting on `waitedOn`; Redis delivers every ping sent so far. */
  const deliveredRound = async (waitedOn: string[] = ['a']): Promise<void> => {
    clock.advance(LIVENESS / 4);
    view.check(waitedOn);
    for (const ping of pings.splice(0)) ping.resolve(1);
    await flush();
  };
  return { clock, pings, gone, sentBefore, dismissed, view, flush, pingDelivered, deliveredRound };
}

describe('MembershipView', () => {
  it('sends compact requests to a set only while every instance in it said "cq":1 in its latest hello', () => {
    const { view } = setup();
    view.hello(hello('a', 'i1', { cq: 1 }), true);
    view.hello(hello('b', 'i1', { cq: 1 }), true);
    const both = view.awaitedFor('p', undefined)!;
    expect([...both]).toEqual(['a', 'b']);
    expect(view.readCompactRequests(both)).toBe(true);
    expect(view.readCompactRequests(new Set())).toBe(false);
    expect(view.readCompactRequests(new Set(['a', 'unknown']))).toBe(false);
    // One of them says hello again without it (an older version started under its id).
    view.hello(hello('b', 'i2'), true);
    expect(view.readCompactRequests(view.awaitedFor('p', undefined)!)).toBe(false);
    expect(view.readCompactRequests(both)).toBe(false);
    view.hello(hello('b', 'i2', { cq: 1 }), true);
    expect(view.readCompactRequests(view.awaitedFor('p', undefined)!)).toBe(true);
    // A new incarnation heard of before its hello (a reply, a pong): objects until its hello says.
    view.heard('a', 'i9');
    expect(view.readCompactRequests(view.awaitedFor('p', undefined)!)).toBe(false);
    expect(view.readCompactRequests(new Set(['b']))).toBe(true);
  });

  it('a replayed hello of a dead incarnation never rolls the view back, nor does its bye remove the live one', () => {
    const { view, gone } = setup();
    view.hello(hello('a', 'old', { seq: 0, at: 1000 }), true);
    view.hello(hello('a', 'new', { seq: 0, at: 5000 }), true);
    gone.length = 0;
    expect(view.hello(hello('a', 'old', { seq: 0, at: 1000 }), false)).toBe('replayed');
    expect(view.bye('a', 'old', 1, 1100)).toBe(false);
    expect(view.list().map((member) => member.incarnation)).toEqual(['new']);
    expect(gone).toEqual([]);
  });

  it('a replayed hello or bye of the current incarnation (a sequence number already seen) is dropped', () => {
    const { view } = setup();
    view.hello(hello('a', 'i1', { seq: 3, at: 1000 }), true);
    expect(view.hello(hello('a', 'i1', { seq: 2, at: 900 }), false)).toBe('replayed');
    expect(view.hello(hello('a', 'i1', { seq: 3, at: 1000 }), false)).toBe('replayed');
    expect(view.bye('a', 'i1', 3, 1000)).toBe(false);
    expect(view.list()).toHaveLength(1);
    expect(view.bye('a', 'i1', 4, 1200)).toBe(true);
    expect(view.list()).toHaveLength(0);
  });

  it('keeps at most MAX_UNVOUCHED_MEMBERS members only heard of, never pings them, and lists none of them', async () => {
    const { view, pings, flush } = setup();
    view.hello(hello('real', 'r'), true);
    let dropped = 0;
    for (let index = 0; index < 10_000; index++) if (view.hello(hello(`ghost-${index}`, 'g'), false) === 'dropped') dropped++;
    expect(view.size).toBe(1 + MAX_UNVOUCHED_MEMBERS);
    expect(dropped).toBe(10_000 - MAX_UNVOUCHED_MEMBERS);
    expect(view.list().map((member) => member.instanceId)).toEqual(['real']);
    view.check([...view.awaitedFor('p', undefined)!]);
    await flush();
    expect(pings.map((ping) => ping.id)).toEqual([]);
  });

  it('an unsolicited hello of another incarnation does not displace a vouched member; the who answer it prompts does', () => {
    const { view, gone } = setup();
    view.hello(hello('a', 'i1'), true);
    expect(view.hello(hello('a', 'forged'), false)).toBe('unvouched');
    expect(view.list().map((member) => member.incarnation)).toEqual(['i1']);
    expect(gone).toEqual([]);
    view.hello(hello('a', 'i2'), true);
    expect(view.list().map((member) => member.incarnation)).toEqual(['i2']);
    expect(gone).toEqual([['a', 'left']]);
  });

  it('when a restart is confirmed, tells only the requests sent before the new incarnation\'s first hello arrived that the id left', () => {
    const { view, gone, sentBefore } = setup();
    view.hello(hello('a', 'i1'), true);
    const sentEarlier = view.sendMark;
    // The restarted process announces itself unasked; the view keeps i1 until it is confirmed.
    view.hello(hello('a', 'i2'), false);
    const sentBetween = view.sendMark;
    view.hello(hello('a', 'i2'), true);
    expect(gone).toEqual([['a', 'left']]);
    // A request sent between that hello and the who answer reached i2: it is not among those told.
    expect(sentEarlier).toBeLessThan(sentBefore[0]!);
    expect(sentBetween).toBeGreaterThanOrEqual(sentBefore[0]!);
    // Confirmed by its pong alone (no hello seen first): requests sent before that pong are told.
    const sentThen = view.sendMark;
    view.heard('a', 'i3');
    expect(sentThen).toBeLessThan(sentBefore[1]!);
    expect(view.sendMark).toBeGreaterThanOrEqual(sentBefore[1]!);
  });

  it('a pong on the members channel keeps a vouched member alive, and neither vouches for a stranger nor switches incarnation', () => {
    const { view, gone } = setup();
    view.hello(hello('a', 'i1'), true);
    view.hello(hello('ghost', 'g'), false);
    view.heardShared('ghost', 'g');
    view.heardShared('a', 'forged');
    expect(view.isUnvouched('ghost')).toBe(true);
    expect(view.list().map((member) => member.incarnation)).toEqual(['i1']);
    expect(gone).toEqual([]);
  });

  it('a complete who round clears members only heard of once they had livenessTimeout to be vouched for, naming them to nobody', () => {
    const { view, clock, gone, dismissed } = setup();
    view.hello(hello('real', 'r'), true);
    view.hello(hello('ghost', 'g'), false);
    expect(view.markSynced(view.roundStart(), new Set(['real']))).toBe(1);
    expect(view.size).toBe(2);
    clock.advance(LIVENESS);
    expect(view.markSynced(view.roundStart(), new Set(['real']))).toBe(0);
    expect(view.size).toBe(1);
    expect(gone).toEqual([]);
    expect(dismissed).toEqual(['ghost']);
  });

  it('a who round takes a vouched member that did not answer for unreachable only once a ping finds nobody on its direct channel', async () => {
    const { view, pings, gone, flush } = setup();
    view.hello(hello('draining', 'd'), true);
    view.hello(hello('dead', 'x'), true);
    view.markSynced(view.roundStart(), new Set());
    expect(pings.map((ping) => ping.id)).toEqual(['draining', 'dead']);
    pings[0]!.resolve(1);
    pings[1]!.resolve(0);
    await flush();
    expect(view.list().map((member) => member.instanceId)).toEqual(['draining']);
    expect(gone).toEqual([['dead', 'unreachable']]);
  });

  it('an unreachable member stays in the view and is named; a later ping that Redis delivers brings it back', async () => {
    const { view, pings, gone, flush, clock } = setup();
    view.hello(hello('cut', 'c'), true);
    view.markSynced(view.roundStart(), new Set());
    pings[0]!.resolve(0);
    await flush();
    expect(gone).toEqual([['cut', 'unreachable']]);
    expect(view.list()).toEqual([]);
    expect([...view.silentAmong(new Set(['cut']))]).toEqual([['cut', 'unreachable']]);
    // Pinged again a quarter later while requests are open; still nobody: named again, still kept.
    clock.advance(LIVENESS / 4);
    view.check(['cut']);
    expect(pings).toHaveLength(2);
    pings[1]!.resolve(0);
    await flush();
    expect(gone).toEqual([['cut', 'unreachable'], ['cut', 'unreachable']]);
    // Reconnected: the next ping counts a receiver, and it is a member under judgement again.
    clock.advance(LIVENESS / 4);
    view.check(['cut']);
    pings[2]!.resolve(1);
    await flush();
    expect(view.list().map((member) => member.instanceId)).toEqual(['cut']);
    expect([...view.silentAmong(new Set(['cut']))]).toEqual([]);
  });

  it('a who round does not remove an instance that did not answer it but replied meanwhile (a draining one still answering)', () => {
    const { view } = setup();
    view.hello(hello('a', 'i'), true);
    const since = view.roundStart();
    view.heard('a');
    view.markSynced(since, new Set());
    expect(view.list()).toHaveLength(1);
  });

  it('tells who serves a pattern even before it is synced, members only heard of and draining ones included', () => {
    const { view } = setup();
    view.markUnsynced();
    view.hello(hello('a', 'i', { patterns: ['p'] }), true);
    view.hello(hello('b', 'i', { patterns: ['q'] }), true);
    view.hello(hello('c', 'i', { patterns: ['p'] }), false);
    view.hello(hello('d', 'i', { patterns: ['p'], draining: true }), true);
    // Synced once: what it knows still counts (see the next test).
    expect([...view.awaitedFor('p', undefined)!].sort()).toEqual(['a', 'c']);
    // Before its first `who` round has ended, the view cannot tell.
    const fresh = new MembershipView({ ping: async () => 0, instanceGone: () => undefined, instanceDismissed: () => undefined }, LIVENESS, new FakeClock());
    fresh.hello(hello('a', 'i', { patterns: ['p'] }), true);
    expect(fresh.awaitedFor('p', undefined)).toBeUndefined();
    expect([...view.servingNow('p', undefined)]).toEqual(['a', 'c', 'd']);
    expect([...view.servingNow('x', 'b')]).toEqual(['b']);
    expect([...view.servingNow('p', 'd')]).toEqual(['d']);
  });

  it('after a loss of the subscriber, still awaits what it knew until the next round ends (an instance may be re-subscribing)', () => {
    const { view } = setup();
    view.hello(hello('a', 'i', { patterns: ['p'] }), true);
    view.hello(hello('b', 'i', { patterns: ['p'] }), true);
    view.markSynced(view.roundStart());
    view.markUnsynced();
    expect(view.isSynced).toBe(false);
    expect([...view.awaitedFor('p', undefined)!].sort()).toEqual(['a', 'b']);
    expect([...view.awaitedFor('p', 'b')!]).toEqual(['b']);
  });

  it('does not await a draining instance for new requests, and keeps it in the view', () => {
    const { view } = setup();
    view.hello(hello('a', 'i'), true);
    view.hello(hello('b', 'j', { draining: true }), true);
    expect([...view.awaitedFor('p', undefined)!]).toEqual(['a']);
    expect(view.isDraining('b')).toBe(true);
  });

  it('judges no instance while its ping has not been delivered by Redis', async () => {
    const { view, clock, pings, gone, flush, deliveredRound: round } = setup();
    view.hello(hello('a', 'i'), true);
    clock.advance(LIVENESS / 2);
    view.check(['a']);
    expect(pings).toHaveLength(1);
    // Redis hung: the PUBLISH of the ping does not return for 3 s.
    for (let index = 0; index < 12; index++) {
      clock.advance(LIVENESS / 4);
      view.check(['a']);
    }
    expect(gone).toEqual([]);
    expect(pings).toHaveLength(1);
    // Redis answers again; the ping (and its repeats) are delivered from now on.
    for (const ping of pings.splice(0)) ping.resolve(1);
    await flush();
    await round();
    await round();
    expect(gone).toEqual([]);
    // Delivered and still unanswered after three quarters of the bound: silent.
    await round();
    expect(gone).toEqual([['a', 'silent']]);
  });

  it('pings at the second round without news, and repeats each round, when the rounds fire a millisecond early by the clock', async () => {
    const { view, clock, pings, flush } = setup();
    view.hello(hello('a', 'i'), true);
    // The first round notes it heard from `a`; the next ones come a quarter apart by their timers,
    // 249 ms by the clock (a timer's start is the event loop's time, a little behind the clock).
    clock.advance(LIVENESS / 4);
    view.heard('a', 'i');
    view.check(['a']);
    clock.advance(LIVENESS / 4 - 1);
    view.check(['a']);
    expect(pings).toEqual([]);
    // Nothing from it for two rounds (498 ms by the clock): pinged now, not a round later.
    clock.advance(LIVENESS / 4 - 1);
    view.check(['a']);
    expect(pings.map((ping) => ping.id)).toEqual(['a']);
    pings.shift()!.resolve(1);
    await flush();
    // Still unanswered at the next round: pinged again (a process killed after the first is found gone).
    clock.advance(LIVENESS / 4 - 1);
    view.check(['a']);
    expect(pings.map((ping) => ping.id)).toEqual(['a']);
  });

  it('does not hold the caller\'s own event-loop stall against an instance', async () => {
    const { view, clock, pings, gone, flush } = setup();
    view.hello(hello('a', 'i'), true);
    clock.advance(LIVENESS / 2);
    view.check(['a']);
    pings[0]!.resolve(1);
    await flush();
    // The caller's loop is blocked 900 ms: the pong sits unread, and the round fires 650 ms late.
    clock.advance(900);
    view.check(['a'], 900 - LIVENESS / 4);
    expect(gone).toEqual([]);
    view.heard('a', 'i');
    clock.advance(LIVENESS / 4);
    view.check(['a']);
    expect(gone).toEqual([]);
  });

  it('a stall of the caller\'s own after a ping was answered does not make that ping look unanswered', async () => {
    const { view, clock, pings, gone, pingDelivered } = setup();
    await pingDelivered();
    view.heard('a', 'i');
    // Requests end; a later one waits on it again: its pong is folded in, no ping needed yet.
    clock.advance(600);
    view.check(['a']);
    expect(pings).toEqual([]);
    // Then the caller's loop is blocked a whole second: the next round fires that late.
    clock.advance(LIVENESS / 4 + 1000);
    view.check(['a'], 1000);
    expect(gone).toEqual([]);
    // It is pinged afresh instead, and judged on that ping only.
    expect(pings.map((ping) => ping.id)).toEqual(['a']);
  });

  it('a pong that arrives before Redis\'s answer to the ping\'s PUBLISH answers that ping', async () => {
    const { view, clock, pings, gone, flush } = setup();
    view.hello(hello('a', 'i'), true);
    clock.advance(LIVENESS / 2);
    view.check(['a']);
    // The pong comes in on the subscriber connection; a round folds it in; then the PUBLISH's answer.
    view.heard('a', 'i');
    clock.advance(10);
    view.check(['a']);
    clock.advance(5);
    pings.shift()!.resolve(1);
    await flush();
    // No request for a while; the next one waits on it: it is pinged afresh, not found silent.
    clock.advance(LIVENESS);
    view.check(['a']);
    expect(gone).toEqual([]);
    expect(pings.map((ping) => ping.id)).toEqual(['a']);
  });

  it('a ping left unjudged while no request waited (its pong lost in a failover) is not held against the instance by the next request: it is pinged afresh', async () => {
    const { view, clock, pings, gone, flush, pingDelivered, deliveredRound } = setup();
    // Delivered; its pong is lost (the caller's inbox was moving to a promoted replica), and the
    // requests that waited on it end before any round judges the ping.
    await pingDelivered();
    // No round for 5 bounds (no request waited on it), and nothing heard from it meanwhile: the
    // next request that waits on it must not find it silent at its first round.
    clock.advance(5 * LIVENESS);
    view.check(['a']);
    expect(gone).toEqual([]);
    // Pinged afresh; judged on that ping: delivered and unanswered for the bound, silent.
    expect(pings.map((ping) => ping.id)).toEqual(['a']);
    pings.shift()!.resolve(1);
    await flush();
    for (let round = 0; round < 3; round++) await deliveredRound();
    expect(gone).toEqual([['a', 'silent']]);
  });

  it('pings a silent instance again, and its pong brings it back', async () => {
    const { view, clock, pings, pingDelivered, deliveredRound } = setup();
    await pingDelivered();
    for (let round = 0; round < 4; round++) await deliveredRound();
    expect(view.list()).toEqual([]);
    clock.advance(LIVENESS / 4);
    view.check([]);
    expect(pings.map((ping) => ping.id)).toEqual(['a']);
    view.heard('a', 'i');
    expect(view.list().map((member) => member.instanceId)).toEqual(['a']);
  });

  it('a restarted process under an unreachable id is not taken for the old one leaving: the receiver Redis counted was the new one', async () => {
    const { view, clock, pings, gone, flush } = setup();
    view.hello(hello('a', 'i'), true);
    clock.advance(LIVENESS / 2);
    view.check(['a']);
    // Nobody on its direct channel: the process died.
    pings.shift()!.resolve(0);
    await flush();
    expect(gone).toEqual([['a', 'unreachable']]);
    // A new process under the id subscribes; the next ping is counted before its hello arrives.
    clock.advance(LIVENESS / 4);
    view.check(['a']);
    pings.shift()!.resolve(1);
    await flush();
    view.hello(hello('a', 'j'), true);
    expect(gone).toEqual([['a', 'unreachable']]);
    // A later restart, after a sign of life from the running incarnation, is the old one leaving.
    view.heard('a', 'j');
    view.hello(hello('a', 'k'), true);
    expect(gone).toEqual([['a', 'unreachable'], ['a', 'left']]);
  });

  it('stops pinging an instance silent for 30 liveness bounds, and drops it', async () => {
    const { view, gone, pings, deliveredRound: round } = setup();
    view.hello(hello('a', 'i'), true);
    // Pinged at the second round (heard of half a bound before), found silent at the fifth.
    for (let index = 0; index < 6; index++) await round(['a']);
    expect(gone.at(-1)).toEqual(['a', 'silent']);
    const before = gone.length;
    // Found silent one round before the last of those six: 30 bounds later it is dropped.
    for (let index = 0; index < 30 * 4 - 2; index++) await round([]);
    expect(gone.length).toBe(before);
    await round([]);
    expect(gone.slice(before)).toEqual([['a', 'left']]);
    expect(view.size).toBe(0);
    await round([]);
    expect(pings).toEqual([]);
  });

  it('publishes a topic on a wildcard binding only once a vouched member announces it, and no longer once it left', () => {
    const { view } = setup();
    view.hello(hello('exact', 'e1', { patterns: ['audit.login'] }), true);
    // Unasked, from an unknown id: anyone can publish that; no request pays for it until a who round or a reply vouches for it.
    expect(view.hello(hello('wild', 'w1', { patterns: ['audit.>', 'audit.*'] }), false)).toBe('unvouched');
    expect(view.requestBindings.routesFor('audit.login')).toEqual([]);
    view.heard('wild');
    expect([...view.requestBindings.routesFor('audit.login')].sort()).toEqual(['audit.*', 'audit.>']);
    // Whom the request then waits for, and how many deliveries each gets.
    const routes = view.requestBindings.routesFor('audit.login');
    expect([...view.awaitedFor('audit.login', undefined, routes)!].sort()).toEqual(['exact', 'wild']);
    expect(view.deliveriesTo('wild', 'audit.login', routes)).toBe(2);
    expect(view.deliveriesTo('exact', 'audit.login', routes)).toBe(1);
    expect(view.bye('wild', 'w1')).toBe(true);
    expect(view.requestBindings.routesFor('audit.login')).toEqual([]);
  });
});
