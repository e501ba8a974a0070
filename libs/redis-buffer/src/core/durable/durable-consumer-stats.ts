/** Counters for monitoring one instance's durable handlers; they only ever grow. */
export interface DurableConsumerStats {
  /** New entries read from the streams. */
  received: number;
  /** Entries claimed from an instance that stopped renewing them (crashed, frozen, or shut down). */
  claimed: number;
  /** Handler runs started (each attempt, each duplicate run). */
  runs: number;
  /** Handler runs that succeeded, whether or not their acknowledgement was accepted. */
  succeeded: number;
  /** Handler runs that succeeded and were acknowledged. */
  handled: number;
  /**
   * Acknowledgements Redis refused: the run succeeded, but meanwhile another consumer claimed the
   * entry (this one froze or was cut off past claimIdle) or it was already acknowledged. The entry
   * ran (or runs) twice; its key's turn stayed with the owner.
   */
  lateAcksRefused: number;
  /** Runs of an entry that was already acknowledged by the time they ended: a second run of a done entry. */
  duplicatesRun: number;
  /** Entries let go because another consumer owns them now (found at renewal, begin or dead-letter). */
  lost: number;
  /**
   * Runs granted but not started, because the grant came back claimIdle / 2 or more after it was
   * asked for (this process was frozen or starved): by then another consumer may hold the entry.
   * Asked again: that checks ownership, and reuses the attempt if no one ran the entry meanwhile.
   */
  staleGrants: number;
  /** Handler runs that failed. */
  failed: number;
  /** Attempts started after a failure. */
  retried: number;
  deadLettered: number;
  /** Of `deadLettered`: entries over `maxPayloadBytes`, dead-lettered unread. */
  oversized: number;
  /** Of `deadLettered`, with `signingKey`: entries unsigned or with a signature no key verifies, dead-lettered unrun. */
  forged: number;
  /** Entries acknowledged without running: their idempotency key had already succeeded in this group. */
  duplicates: number;
  /** Replayed entries meant for another group, acknowledged without running. */
  skipped: number;
  /** Entries whose headers did not match their handler's `headers` filter, acknowledged without running. */
  filtered: number;
  /** Entries handed back to the group at shutdown (or on a Redis error) without finishing. */
  released: number;
  /** Pending entries found deleted from the stream (by an XTRIM that ignored consumer groups). */
  deletedWhilePending: number;
  /** Entries removed by retention trimming. */
  trimmed: number;
  /** Consumer names of this instance's earlier processes removed from its groups once they held nothing (see `DurableConsumer.pruneNames`). */
  namesPruned: number;
  redisErrors: number;
}

export function emptyDurableConsumerStats(): DurableConsumerStats {
  return {
    received: 0,
    claimed: 0,
    runs: 0,
    succeeded: 0,
    handled: 0,
    lateAcksRefused: 0,
    duplicatesRun: 0,
    lost: 0,
    staleGrants: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    oversized: 0,
    forged: 0,
    duplicates: 0,
    skipped: 0,
    filtered: 0,
    released: 0,
    deletedWhilePending: 0,
    trimmed: 0,
    namesPruned: 0,
    redisErrors: 0,
  };
}
