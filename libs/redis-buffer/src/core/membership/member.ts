// One instance as a caller's membership view holds it, and the replay check of what it announces.

/** A live instance as a caller sees it (`BufferClient.instances()`). */
export interface InstanceInfo {
  readonly instanceId: string;
  /** Random per process: a restarted instance with the same id has a new one. */
  readonly incarnation: string;
  /** Request patterns it answers, in channel form (object patterns as canonical JSON). */
  readonly patterns: readonly string[];
  /** Event patterns it handles, in channel form. */
  readonly events: readonly string[];
  /** Present (`true`) when it announced its drain: it takes no new request and still answers what it received. */
  readonly draining?: true;
}

export interface Member {
  info: InstanceInfo;
  patterns: ReadonlySet<string>;
  /**
   * Vouched for by an exchange with this caller (it answered a `who` on the caller's inbox, a ping,
   * or a request). Only vouched members are pinged, and only they are named when Redis did not
   * count them: an unsolicited `hello` (which anyone can forge without `signingKey`) is waited for
   * while Redis's count is not reached, and costs nothing else until the next `who` round (asked for
   * at once) vouches for it or removes it.
   */
  vouched: boolean;
  /** It announced it is draining: no new request reaches it; what it received it still answers. */
  draining: boolean;
  /** Its incarnation's hello said `"cq":1`: it reads compact requests. */
  readsCompact: boolean;
  /** When this incarnation's first hello arrived, by the caller's clock. */
  joinedAt: number;
  /** Last time anything came from it (hello, pong, a reply), by the caller's clock, to the liveness round. */
  lastHeard: number;
  /** Something came since the last liveness round (set per reply without reading the clock). */
  heardSinceCheck: boolean;
  /** The view's `signs` count when anything last came from it: a `who` round does not remove it after. */
  lastSign: number;
  /**
   * When Redis delivered the first ping still unanswered (its PUBLISH returned with a receiver), if
   * one is: silence is measured from there, never from a PUBLISH that Redis has not answered.
   */
  pingSentAt: number | undefined;
  /** A ping's PUBLISH has not returned yet: Redis is slow or hung; that says nothing about the instance. */
  pingInFlight: boolean;
  /** When the latest ping was sent: an unanswered one is repeated, to tell gone from frozen. */
  lastPingAt: number;
  /** Taken for absent: silent, or unreachable (see `absentAs`); requests do not wait for it and name it. */
  silent: boolean;
  /** Why it is absent, as requests name it: `silent` (pings delivered, unanswered) or `unreachable` (a ping counted nobody). */
  absentAs: 'silent' | 'unreachable';
  /** When it was found silent: one silent for `FORGET_SILENT_AFTER` bounds is dropped from the view. */
  silentSince: number;
  /**
   * It was unreachable, then a ping was counted again with no sign from this incarnation since: the
   * subscriber Redis counted may be a restarted process under its id (see `switchIncarnation`).
   */
  revivedByCount: boolean;
  /** Replay protection: the latest `seq` and `at` accepted from this incarnation (see `hello`). */
  seq: number | undefined;
  at: number | undefined;
  /**
   * Another incarnation under this id said hello unasked (and is not taken on that alone), and the
   * view's `signs` count then: a request sent after that hello reached this caller was published
   * after the new incarnation subscribed, so it is not told the id left if that incarnation is
   * confirmed (see `switchIncarnation`).
   */
  next: { readonly incarnation: string; readonly seenAt: number } | undefined;
}

/**
 * Replay protection for `hello` and `bye` (with `signingKey` a forger cannot make new ones, but can
 * publish captured ones again). Each carries `seq`, the sender incarnation's own counter, and `at`,
 * its clock when sent. Against the entry the view holds for that instance id:
 * - the same incarnation: a `seq` not above the last accepted one is a replay;
 * - another incarnation: an `at` not after the held one's is older than what the view knows (the
 *   dead incarnation's hello replayed after a restart), and is dropped.
 * Envelopes without `seq`/`at` (older senders) are taken as they come.
 */
export function isReplay(member: Member, incarnation: string, seq: number | undefined, at: number | undefined): boolean {
  if (member.info.incarnation === incarnation) return seq !== undefined && member.seq !== undefined && seq <= member.seq;
  return at !== undefined && member.at !== undefined && at <= member.at;
}
