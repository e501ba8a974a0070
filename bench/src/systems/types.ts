import type { KindCounts } from '../publish-tally.js';

export type Done = (error: unknown, replies: number) => void;

/** The caller's side of one system, driven by the caller process. */
export interface CallerSystem {
  start(): Promise<void>;
  /**
   * Sends one request that `n` responders answer; `done` is called once, when the request is
   * complete (every responder answered) or failed. `replies` is how many answers arrived.
   */
  request(n: number, pattern: string, data: unknown, done: Done): void;
  /** Optional: the same through the system's "gather" form (used by the 10,000-gathers test). */
  gather?(n: number, pattern: string, data: unknown, timeoutMs: number, done: (error: unknown, replies: number, complete: boolean) => void): void;
  /** Starts counting PUBLISHes by kind on this caller's connections (systems on Redis pub/sub); the counts only grow. */
  countPublishes?(): KindCounts;
  close(): Promise<void>;
}

/** The responders of one system inside one responder process. */
export interface ResponderGroup {
  close(): Promise<void>;
}
