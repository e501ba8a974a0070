import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { GONE_AFTER_MS, SILENT_AFTER_MS, type DemoControlEvent, type InstanceHeartbeat, type InstancePresence, type PresenceState } from './live-events.js';

/** How often silence is checked for. */
const CHECK_EVERY_MS = 200;

/**
 * Which instances exist and whether they answer, as seen from here: built from their heartbeats
 * and farewells on the buffer. Every instance builds the same view, so a page shows the same thing
 * whichever instance serves it. A frozen instance and one killed without a word look alike (both
 * silent) until `GONE_AFTER_MS`, unless someone who knows (the demo launcher) says it has gone.
 */
@Injectable()
export class PresenceService implements OnModuleDestroy {
  private readonly instances = new Map<string, InstancePresence>();
  private readonly listeners = new Set<(presence: InstancePresence) => void>();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.check(), CHECK_EVERY_MS);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  /** Every instance known here, by name. */
  list(): InstancePresence[] {
    return [...this.instances.values()].sort((left, right) => left.instance.localeCompare(right.instance, 'en', { numeric: true }));
  }

  get(instance: string): InstancePresence | undefined {
    return this.instances.get(instance);
  }

  /** Calls `listener` with an instance's presence each time it changes. */
  onChange(listener: (presence: InstancePresence) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  heartbeat(beat: InstanceHeartbeat): void {
    const now = Date.now();
    const known = this.instances.get(beat.instance);
    if (known?.state === 'answering') {
      this.instances.set(beat.instance, { ...known, url: beat.url, lastSeenAt: now });
      return;
    }
    // A comeback makes the launcher's word on a freeze, an exit or a start out of date; not on a thaw or a finished start.
    const demo = known?.demo && (known.demo.action === 'thawed' || known.demo.action === 'started') ? known.demo : null;
    this.set({ instance: beat.instance, url: beat.url, state: 'answering', reason: null, lastSeenAt: now, since: now, demo });
  }

  left(instance: string, reason: string): void {
    const known = this.instances.get(instance);
    if (known?.state === 'gone' && known.reason === reason) return;
    this.set({ instance, url: known?.url ?? null, state: 'gone', reason, lastSeenAt: known?.lastSeenAt ?? null, since: Date.now(), demo: known?.demo ?? null });
  }

  demoControl(event: DemoControlEvent): void {
    const known = this.instances.get(event.instance);
    this.set(
      known
        ? { ...known, demo: event }
        : { instance: event.instance, url: null, state: 'gone', reason: 'not started yet', lastSeenAt: null, since: Date.now(), demo: event },
    );
  }

  private set(presence: InstancePresence): void {
    this.instances.set(presence.instance, presence);
    for (const listener of this.listeners) listener(presence);
  }

  private transition(known: InstancePresence, state: PresenceState, reason: string): void {
    this.set({ ...known, state, reason, since: Date.now() });
  }

  private check(): void {
    const now = Date.now();
    for (const known of this.instances.values()) {
      const silentMs = known.lastSeenAt === null ? Infinity : now - known.lastSeenAt;
      if (known.state === 'answering' && silentMs > SILENT_AFTER_MS) this.transition(known, 'not answering', `no heartbeat for ${(silentMs / 1000).toFixed(1)} s`);
      else if (known.state === 'not answering' && silentMs > GONE_AFTER_MS) this.transition(known, 'gone', `no heartbeat for ${Math.round(silentMs / 1000)} s`);
    }
  }
}
