import type { Clock, TimerHandle } from '../clock.js';
import type { BufferLogger } from '../logger.js';

/** How long after Redis answers again an instance drops requests that waited in the network past their `ttl`. */
export const RECOVERY_WINDOW_MS = 30_000;

export interface CutOffHost {
  readonly instanceId: string;
  readonly livenessTimeout: number;
  readonly clock: Clock;
  readonly logger: BufferLogger;
  /** Redis stopped answering (noticed once per cut). */
  cut(): void;
  /** Redis answers again after `cutOffMs` without answering: say hello again. */
  back(cutOffMs: number): void;
}

/**
 * Notices, on the instance's side, a cut from Redis that closes no socket (a network blackhole, a
 * hung server): a PING on the subscriber connection every half `livenessTimeout`, and one still
 * unanswered after `livenessTimeout` means requests cannot reach this instance. It says so in the
 * log; when Redis answers again it says so too, the instance announces itself again (callers took
 * it for silent meanwhile), and for `RECOVERY_WINDOW_MS` requests that waited in the network past
 * their `ttl` are dropped (`waitedPast`): their callers stopped waiting long ago.
 */
export class CutOffWatch {
  private readonly callerClocks = new CallerClocks();
  private timer: TimerHandle | undefined;
  /** A round trip on the connection that delivers requests, and whether the bus says it is connected (a closed socket is the bus's to notice). */
  private bus: { ping(): Promise<void>; connected(): boolean } | undefined;
  private pingSentAt: number | undefined;
  private cutOffSince: number | undefined;
  private recoveringUntil = Number.NEGATIVE_INFINITY;

  constructor(private readonly host: CutOffHost) {}

  start(ping: () => Promise<void>, connected: () => boolean): void {
    if (this.timer !== undefined) return;
    this.bus = { ping, connected };
    this.timer = this.host.clock.setTimer(this.tick, this.host.livenessTimeout / 2);
  }

  stop(): void {
    if (this.timer !== undefined) this.host.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /**
   * Notes a request's lag (`arrival − sent`) from `from`; whether it is to be dropped: it waited in
   * the network past its `ttl` while this instance was cut off, or recovers from a cut.
   */
  waitedPast(from: string, lag: number, ttl: number | undefined): boolean {
    return this.callerClocks.waitedPast(from, lag, ttl) && (this.cutOffSince !== undefined || this.host.clock.now() < this.recoveringUntil);
  }

  private readonly tick = (): void => {
    const { clock, livenessTimeout } = this.host;
    this.timer = clock.setTimer(this.tick, livenessTimeout / 2);
    const now = clock.now();
    if (this.pingSentAt !== undefined) {
      if (this.cutOffSince === undefined && now - this.pingSentAt >= livenessTimeout) {
        this.cutOffSince = this.pingSentAt;
        this.host.cut();
        this.host.logger.warn(`Instance "${this.host.instanceId}": Redis has not answered for ${now - this.pingSentAt} ms (a network cut or a hung server): requests cannot reach this instance, and callers take it for silent.`);
      }
      return;
    }
    const bus = this.bus!;
    if (!bus.connected()) return;
    this.pingSentAt = now;
    const settled = (): void => {
      this.pingSentAt = undefined;
      const since = this.cutOffSince;
      // Stopped meanwhile (the instance drains or left): it announces nothing more.
      if (since === undefined || this.timer === undefined) return;
      this.cutOffSince = undefined;
      const cutOffMs = clock.now() - since;
      this.recoveringUntil = clock.now() + RECOVERY_WINDOW_MS;
      this.host.logger.log(`Instance "${this.host.instanceId}": Redis answers again after ${cutOffMs} ms; announcing itself, and dropping requests that waited past their ttl.`);
      this.host.back(cutOffMs);
    };
    bus.ping().then(settled, settled);
  };
}

/** Most callers an instance keeps a clock offset for. */
const MAX_CALLERS = 1024;

/**
 * Per caller, the least difference seen between this host's clock at a request's arrival and the
 * caller's clock when it published the request (`sent`): the clocks' offset plus the fastest
 * delivery. A request whose difference exceeds that by more than its `ttl` waited in the network
 * longer than its caller waits. Only acted on around a cut (`CutOffWatch.waitedPast`): a clock
 * stepped back on a caller would otherwise make every request look old.
 */
class CallerClocks {
  private readonly least = new Map<string, number>();

  /** Notes a request's lag; whether it waited past `ttl` by this caller's usual lag. */
  waitedPast(from: string, lag: number, ttl: number | undefined): boolean {
    const least = this.least.get(from);
    if (least === undefined || lag < least) {
      if (least === undefined && this.least.size >= MAX_CALLERS) this.least.delete(this.least.keys().next().value!);
      this.least.set(from, lag);
      return false;
    }
    return ttl !== undefined && lag - least > ttl;
  }
}
