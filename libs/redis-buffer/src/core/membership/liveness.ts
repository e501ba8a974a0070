import type { Clock } from '../clock.js';
import type { Member } from './member.js';
import type { MissingReason } from '../gather/reply.js';

/** A member silent for this many `livenessTimeout`s is dropped from the view (and pinged no more). */
const FORGET_SILENT_AFTER = 30;

/** What the liveness rounds read and change of the view they keep honest. */
export interface LivenessView {
  readonly members: ReadonlyMap<string, Member>;
  /** The view's count of signs of life so far (see `Member.lastSign`). */
  signs(): number;
  /** Who is absent changed: what the view derived from it is stale. */
  changed(): void;
  remove(instanceId: string, reason: MissingReason): void;
}

/** What liveness tells and asks of the caller (the view's `MembershipHost`). */
export interface LivenessHost {
  /** Sends a ping to one instance's direct channel; resolves with Redis's receiver count (-1: not sent). */
  ping(instanceId: string): Promise<number>;
  instanceGone(instanceId: string, reason: MissingReason): void;
}

/**
 * Keeps a membership view honest: pings sent only to vouched instances a request has waited on for
 * a while (one ping per instance per liveness round, whatever the number of requests). An instance
 * Redis no longer counts on its direct channel is unreachable; one that does not answer a ping Redis
 * delivered within the liveness bound is silent (frozen, partitioned). Absent ones are pinged again
 * at each round while requests are open, so they come back without having to speak first.
 */
export class Liveness {
  private silentCount = 0;

  constructor(
    private readonly view: LivenessView,
    private readonly host: LivenessHost,
    private readonly livenessTimeout: number,
    private readonly clock: Clock,
  ) {}

  /** Whether any member is taken for absent now. */
  get anyAbsent(): boolean {
    return this.silentCount > 0;
  }

  /**
   * One liveness round over the instances that open requests have waited on for a while: ping those
   * not heard from recently, and declare silent those whose delivered ping went unanswered for the
   * rest of the liveness bound. Silent members are pinged again, so they come back on their pong.
   *
   * `lagMs` is how late the round's timer fired: the caller's own event loop was blocked that long,
   * and whatever the instances sent meanwhile has not been read yet (timers run before I/O). That
   * time is not held against them.
   */
  check(waitedOn: Iterable<string>, lagMs = 0): void {
    const now = this.clock.now();
    const quarter = this.livenessTimeout / 4;
    // How many rounds ago `at` was, to the nearest: what was heard is noted at a round, and pings go
    // out at one, so silence and repeats are counted in rounds. Compared in milliseconds, two rounds
    // whose timers fired a millisecond early by the clock would count as less than half a bound, and
    // the ping the schedule promises at the second silent round would wait for the third.
    const roundsSince = (at: number): number => Math.round((now - at) / quarter);
    if (lagMs > quarter / 2) {
      // Only a ping still unanswered gets the time back: moving an answered one forward would make
      // it look unanswered, and blame the instance for the caller's own stall.
      for (const member of this.view.members.values()) {
        if (member.pingSentAt !== undefined && !member.heardSinceCheck && member.lastHeard < member.pingSentAt) member.pingSentAt += lagMs;
      }
    }
    for (const id of waitedOn) {
      const member = this.view.members.get(id);
      if (member === undefined) {
        this.host.instanceGone(id, 'left');
        continue;
      }
      if (member.silent) {
        // An unreachable one is pinged again below; a request waits on it only when Redis counted
        // room for it, and the ping's count settles it.
        if (member.absentAs !== 'unreachable') this.host.instanceGone(id, member.absentAs);
        continue;
      }
      // Never pinged on a hello alone: it has to answer a `who` first (see `Member.vouched`).
      if (!member.vouched) continue;
      if (member.heardSinceCheck) {
        member.heardSinceCheck = false;
        member.lastHeard = now;
      }
      // Redis has not answered this member's last ping yet: no judgement either way.
      if (member.pingInFlight) continue;
      const outstanding = member.pingSentAt !== undefined && member.lastHeard < member.pingSentAt;
      // Unanswered for a whole bound yet never judged: no request waited on it meanwhile (a watched
      // ping is judged before five eighths plus a round). Its pong may have been lost with a node
      // that failed over; the instance has not had its chance, so it is pinged afresh and judged on that.
      if (outstanding && now - member.pingSentAt! >= this.livenessTimeout) {
        this.sendPing(id, member, true);
        continue;
      }
      // Judged at the third round after the ping went out: Redis delivered it at least five
      // eighths of the bound ago (its PUBLISH may take a moment to return; a slower Redis delays
      // the judgement by a round).
      if (outstanding && now - member.pingSentAt! >= this.livenessTimeout - quarter - quarter / 2) {
        this.markSilent(id, member);
      } else if (outstanding ? roundsSince(member.lastPingAt) >= 1 : roundsSince(member.lastHeard) >= 2) {
        // Repeated while unanswered: a process killed right after the first ping reached it is then
        // found gone (nobody on its direct channel) rather than taken for frozen.
        this.sendPing(id, member, !outstanding);
      }
    }
    if (this.silentCount > 0) {
      for (const [id, member] of this.view.members) {
        if (!member.silent || member.pingInFlight || roundsSince(member.lastPingAt) < 1) continue;
        // Silent that long: not coming back (a half-open connection keeps it subscribed); stop pinging it.
        if (now - member.silentSince >= FORGET_SILENT_AFTER * this.livenessTimeout) this.view.remove(id, 'left');
        else this.sendPing(id, member, false);
      }
    }
  }

  /** Pings the silent ones among `ids` (a request is about to skip them), at most once a quarter each. */
  repingSilent(ids: Iterable<string>): void {
    const now = this.clock.now();
    const quarter = this.livenessTimeout / 4;
    for (const id of ids) {
      const member = this.view.members.get(id);
      if (member?.silent === true && !member.pingInFlight && now - member.lastPingAt >= quarter) this.sendPing(id, member, false);
    }
  }

  /** Pings `member` (`first`: silence counts from its delivery), judging it by Redis's count and the answer. */
  sendPing(id: string, member: Member, first: boolean): void {
    member.lastPingAt = this.clock.now();
    member.pingInFlight = true;
    const signsAtSend = this.view.signs();
    this.host.ping(id).then(
      (receivers) => {
        member.pingInFlight = false;
        if (this.view.members.get(id) !== member) return;
        // Nobody subscribed to its direct channel: its process ended, or it lost its connection and
        // is reconnecting (a failover, a cut). Kept in the view and named, not dropped: a result
        // without it is partial. It comes back with its hello, or is forgotten as a silent one is.
        if (receivers === 0) {
          if (!member.silent) return this.markSilent(id, member, 'unreachable');
          member.absentAs = 'unreachable';
          return this.host.instanceGone(id, 'unreachable');
        }
        // Subscribed again: no longer unreachable; whether it answers is judged from this ping on.
        if (receivers > 0 && member.silent && member.absentAs === 'unreachable') {
          this.wake(member);
          member.revivedByCount = true;
          member.pingSentAt = this.clock.now();
          return;
        }
        // Its pong (or anything else from it) came before Redis's answer to the PUBLISH did (they
        // travel on different connections): the ping is answered, nothing is outstanding.
        if (member.lastSign > signsAtSend) return;
        // Delivered: silence counts from now. (Not sent at all, -1: nothing is learnt.)
        if (receivers > 0 && (first || member.pingSentAt === undefined)) member.pingSentAt = this.clock.now();
      },
      () => {
        member.pingInFlight = false;
      },
    );
  }

  private markSilent(id: string, member: Member, reason: 'silent' | 'unreachable' = 'silent'): void {
    member.silent = true;
    member.absentAs = reason;
    member.silentSince = this.clock.now();
    this.silentCount++;
    this.view.changed();
    this.host.instanceGone(id, reason);
  }

  /** `member` showed a sign of life (or Redis counts it again): no longer absent. */
  wake(member: Member): void {
    if (!member.silent) return;
    member.silent = false;
    member.absentAs = 'silent';
    this.silentCount--;
    this.view.changed();
  }

  /** `member` leaves the view (or is replaced by a new entry): no longer counted as absent. */
  forget(member: Member | undefined): void {
    if (member?.silent === true) this.silentCount--;
  }
}
