import type { Clock } from '../clock.js';
import type { HelloEnvelope } from '../wire/envelope.js';
import type { MissingReason } from '../gather/reply.js';

const NONE: readonly string[] = Object.freeze([]);

/** A live instance as a caller sees it (`BufferClient.instances()`). */
export interface InstanceInfo {
  readonly instanceId: string;
  /** Random per process: a restarted instance with the same id has a new one. */
  readonly incarnation: string;
  /** Request patterns it answers, in channel form (object patterns as canonical JSON). */
  readonly patterns: readonly string[];
  /** Event patterns it handles, in channel form. */
  readonly events: readonly string[];
}

interface Member {
  info: InstanceInfo;
  patterns: ReadonlySet<string>;
  /** Last time anything came from it (hello, pong, a reply), by the caller's clock, to the liveness round. */
  lastHeard: number;
  /** Something came since the last liveness round (set per reply without reading the clock). */
  heardSinceCheck: boolean;
  /** When the first ping still unanswered was sent, if one is. */
  pingSentAt: number | undefined;
  /** When the latest ping was sent: an unanswered one is repeated, to tell gone from frozen. */
  lastPingAt: number;
  silent: boolean;
  /** The view's `hellos` count when its last hello arrived. */
  helloNumber: number;
}

/** What the view needs from the caller's side of the protocol. */
export interface MembershipHost {
  /** Sends a ping to one instance's direct channel; resolves with Redis's receiver count. */
  ping(instanceId: string): Promise<number>;
  /** Tells every open request that an instance it may wait for will not answer. */
  instanceGone(instanceId: string, reason: MissingReason): void;
}

/**
 * The caller's view of the instances of a namespace: who is there and which patterns each answers,
 * so that a request knows whom it waits for, and whether each of them still shows signs of life.
 *
 * It is built from what instances publish (`hello` on joining or when asked by `who`, `bye` on
 * leaving) and kept honest by pings sent only to instances a request has waited on for a while:
 * an instance Redis no longer counts on its direct channel is gone; one that does not answer a ping
 * within the liveness bound is silent (frozen, partitioned). Nothing is sent while requests are
 * answered promptly.
 */
export class MembershipView {
  private readonly members = new Map<string, Member>();
  private awaitedCache = new Map<string, ReadonlySet<string>>();
  private synced = false;
  private silentCount = 0;
  // Counts hellos, to tell which members a `who` round can vouch for.
  private hellos = 0;

  constructor(
    private readonly host: MembershipHost,
    private readonly livenessTimeout: number,
    private readonly clock: Clock,
  ) {}

  /** Whether the view is complete enough to decide who a request waits for. */
  get isSynced(): boolean {
    return this.synced;
  }

  /** A mark to pass to `markSynced` for a `who` round starting now. */
  roundStart(): number {
    return this.hellos;
  }

  /**
   * After a `who` round: the view now knows every instance that answered. `complete` is the set of
   * those that answered when every receiver of the `who` did: a member known before the round
   * started (`since`) that did not answer is gone. One that said hello during the round is not.
   */
  markSynced(since: number, complete?: ReadonlySet<string>): void {
    this.synced = true;
    if (complete === undefined) return;
    for (const [id, member] of [...this.members]) if (!complete.has(id) && member.helloNumber <= since) this.remove(id, 'left');
  }

  /** The subscriber was lost: `hello`s and `bye`s may have been missed until the next `who` round. */
  markUnsynced(): void {
    this.synced = false;
  }

  /** Live instances, in the order they became known. */
  list(): InstanceInfo[] {
    const live: InstanceInfo[] = [];
    for (const member of this.members.values()) if (!member.silent) live.push(member.info);
    return live;
  }

  /** An instance introduced itself. A new incarnation under a known id means the old one is gone. */
  hello(envelope: HelloEnvelope): void {
    const known = this.members.get(envelope.from);
    if (known !== undefined && known.info.incarnation !== envelope.inc) this.host.instanceGone(envelope.from, 'left');
    if (known?.silent === true) this.silentCount--;
    this.members.set(envelope.from, {
      info: { instanceId: envelope.from, incarnation: envelope.inc, patterns: [...envelope.patterns], events: [...envelope.events] },
      patterns: new Set(envelope.patterns),
      lastHeard: this.clock.now(),
      heardSinceCheck: false,
      pingSentAt: undefined,
      lastPingAt: 0,
      silent: false,
      helloNumber: ++this.hellos,
    });
    this.awaitedCache.clear();
  }

  /** An instance left after answering everything it had received. */
  bye(instanceId: string, incarnation: string): void {
    const known = this.members.get(instanceId);
    if (known !== undefined && known.info.incarnation !== incarnation) return;
    this.remove(instanceId, 'left');
  }

  /** Something arrived from this instance (a reply or a pong): it is alive. */
  heard(instanceId: string, incarnation?: string): void {
    const member = this.members.get(instanceId);
    if (member === undefined) return;
    if (incarnation !== undefined && incarnation !== member.info.incarnation) {
      // A restarted process under the same id: the one requests were waiting for is gone.
      this.host.instanceGone(instanceId, 'left');
      member.info = { ...member.info, incarnation };
    }
    member.heardSinceCheck = true;
    if (member.silent) {
      member.silent = false;
      this.silentCount--;
      this.awaitedCache.clear();
    }
  }

  /**
   * The instances known to receive a request for `pattern` (or the one named by `to`), silent ones
   * included (see `silentAmong`); empty when the view knows instances but none for the pattern;
   * `undefined`
   * when the view cannot tell (not synced, knows no instance, or `to` names an instance it does not know), in which
   * case Redis's receiver count alone decides completion.
   */
  awaitedFor(pattern: string, to: string | undefined): ReadonlySet<string> | undefined {
    // Knowing no instance at all is no evidence (under another signing key, none can be heard).
    if (!this.synced || this.members.size === 0) return undefined;
    if (to !== undefined) {
      const member = this.members.get(to);
      return member === undefined ? undefined : new Set([to]);
    }
    let awaited = this.awaitedCache.get(pattern);
    if (awaited === undefined) {
      const ids = new Set<string>();
      for (const [id, member] of this.members) if (member.patterns.has(pattern)) ids.add(id);
      awaited = ids;
      this.awaitedCache.set(pattern, awaited);
    }
    return awaited;
  }

  /** Those of `ids` currently taken for silent: a request does not wait for them, and names them. */
  silentAmong(ids: ReadonlySet<string> | undefined): readonly string[] {
    if (ids === undefined || this.silentCount === 0) return NONE;
    const silent: string[] = [];
    for (const id of ids) if (this.members.get(id)?.silent === true) silent.push(id);
    return silent;
  }

  /**
   * One liveness round over the instances that open requests have waited on for a while: ping those
   * not heard from recently, and declare silent those whose ping went unanswered for the rest of
   * the liveness bound.
   */
  check(waitedOn: Iterable<string>): void {
    const now = this.clock.now();
    const quarter = this.livenessTimeout / 4;
    for (const id of waitedOn) {
      const member = this.members.get(id);
      if (member === undefined) {
        this.host.instanceGone(id, 'left');
        continue;
      }
      if (member.silent) {
        this.host.instanceGone(id, 'silent');
        continue;
      }
      if (member.heardSinceCheck) {
        member.heardSinceCheck = false;
        member.lastHeard = now;
      }
      const outstanding = member.pingSentAt !== undefined && member.lastHeard < member.pingSentAt;
      if (outstanding && now - member.pingSentAt! >= this.livenessTimeout - quarter) {
        this.markSilent(id, member);
      } else if (outstanding ? now - member.lastPingAt >= quarter : now - member.lastHeard >= quarter) {
        // Repeated while unanswered: a process killed right after the first ping reached it is then
        // found gone (nobody on its direct channel) rather than taken for frozen.
        if (!outstanding) member.pingSentAt = now;
        member.lastPingAt = now;
        this.host.ping(id).then(
          (receivers) => {
            // Nobody subscribed to its direct channel any more: the process is gone.
            if (receivers === 0 && this.members.get(id) === member) this.remove(id, 'left');
          },
          () => undefined,
        );
      }
    }
  }

  private markSilent(id: string, member: Member): void {
    member.silent = true;
    this.silentCount++;
    this.awaitedCache.clear();
    this.host.instanceGone(id, 'silent');
  }

  private remove(instanceId: string, reason: MissingReason): void {
    const member = this.members.get(instanceId);
    if (member === undefined) return;
    this.members.delete(instanceId);
    if (member.silent) this.silentCount--;
    this.awaitedCache.clear();
    this.host.instanceGone(instanceId, reason);
  }
}
