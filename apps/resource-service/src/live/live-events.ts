import type { ResourceChange } from '../resources/resource.js';

/** Buffer event: "I am alive", every `HEARTBEAT_MS` from every instance. The first one is its arrival. */
export const INSTANCE_HEARTBEAT = 'instance.heartbeat';
/** Buffer event: an instance is leaving (it says so while shutting down), or has died (the demo launcher says so). */
export const INSTANCE_LEFT = 'instance.left';
/** Buffer event from the demo launcher: what it just did to an instance (froze, thawed, killed, restarts it). */
export const DEMO_CONTROL = 'demo.control';

/** How often every instance announces itself. */
export const HEARTBEAT_MS = 250;
/** Without a heartbeat for this long, an instance is shown as not answering (frozen, overloaded or dead). */
export const SILENT_AFTER_MS = 1000;
/** Without a heartbeat for this long, an instance is presumed gone. */
export const GONE_AFTER_MS = 30_000;

export interface InstanceHeartbeat {
  readonly instance: string;
  readonly url: string;
  readonly startedAt: string;
}

export interface InstanceLeft {
  readonly instance: string;
  /** In words: "stopped", "killed by SIGKILL", "exited with code 1". */
  readonly reason: string;
}

/** The launcher's own view of an instance, shown on the page beside what the buffer sees. */
export interface DemoControlEvent {
  readonly instance: string;
  /** What the launcher did or saw: `frozen`, `thawed`, `exited` (killed or crashed), `starting`, `started`. */
  readonly action: string;
  /** A sentence for the page: "frozen (SIGSTOP) from the page", "restarts in 10 s". */
  readonly note: string;
  /** Epoch ms at which the launcher restarts it by itself, when it will. */
  readonly restartAt?: number;
}

/** Where an instance stands, as this instance sees it through Redis. */
export type PresenceState = 'answering' | 'not answering' | 'gone';

export interface InstancePresence {
  readonly instance: string;
  readonly url: string | null;
  readonly state: PresenceState;
  /** Why it is not answering, or gone: "silent for 1.2 s", "stopped", "killed by SIGKILL". */
  readonly reason: string | null;
  /** Epoch ms of its last heartbeat seen here. */
  readonly lastSeenAt: number | null;
  /** Epoch ms since which it has been in this state. */
  readonly since: number;
  /** The demo launcher's latest word on it, if any. */
  readonly demo: DemoControlEvent | null;
}

/** What `GET /live` streams to a page (Server-Sent Events, `event:` is the `type`). */
export type LiveEvent =
  | { readonly type: 'hello'; readonly data: { readonly self: string; readonly instances: readonly InstancePresence[]; readonly demoControls: boolean } }
  | { readonly type: 'presence'; readonly data: InstancePresence }
  | { readonly type: 'resource'; readonly data: ResourceChange };
