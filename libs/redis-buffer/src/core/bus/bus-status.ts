import { ConnectionLostError } from '../errors/connection-lost.error.js';

export type BusStatus = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

/**
 * The status every `RedisBus` reports, derived the same way whatever the topology: "connected"
 * once its connections are ready and its subscriptions confirmed; "connecting" until that first
 * happens, "reconnecting" whenever it stops holding afterwards; "disconnected" when a connection
 * gave up; "closed" for good once `close()` began. Each change is told to `onChange`.
 */
export class BusStatusMachine {
  private currentStatus: BusStatus = 'disconnected';
  private connectedOnce = false;
  private closedForGood = false;
  private attemptUnderWay: Promise<void> | undefined;

  constructor(private readonly onChange: (status: BusStatus) => void) {}

  get current(): BusStatus {
    return this.currentStatus;
  }

  /** It was connected at least once: a later loss is a reconnect, and publishing may be tried. */
  get everConnected(): boolean {
    return this.connectedOnce;
  }

  get closed(): boolean {
    return this.closedForGood;
  }

  /**
   * `connect()` of a bus: resolves at once when connected, rejects once closed, and otherwise runs
   * `open` once however many callers wait (they share the attempt under way).
   */
  attempt(open: () => Promise<void>): Promise<void> {
    if (this.currentStatus === 'connected') return Promise.resolve();
    if (this.closedForGood) return Promise.reject(new ConnectionLostError('the client was closed'));
    this.attemptUnderWay ??= open().finally(() => {
      this.attemptUnderWay = undefined;
    });
    return this.attemptUnderWay;
  }

  /** A `connect()` attempt is under way. */
  get attempting(): boolean {
    return this.attemptUnderWay !== undefined;
  }

  /** A connection attempt begins. */
  connecting(): void {
    this.set('connecting');
  }

  /**
   * Derives the status from the connections: `holding` (ready, subscriptions confirmed) or
   * `ended` (a connection gave up reconnecting). Ignored once closed.
   */
  refresh(holding: boolean, ended: boolean): void {
    if (this.closedForGood) return;
    if (holding) {
      this.connectedOnce = true;
      this.set('connected');
    } else if (ended) {
      this.set('disconnected');
    } else {
      this.set(this.connectedOnce ? 'reconnecting' : 'connecting');
    }
  }

  /** A connection attempt was abandoned (its connections stopped); ignored once closed. */
  abandoned(): void {
    if (!this.closedForGood) this.set('disconnected');
  }

  /** `close()` began: nothing moves the status any more. */
  close(): void {
    this.closedForGood = true;
    this.set('closed');
  }

  private set(status: BusStatus): void {
    if (status === this.currentStatus) return;
    this.currentStatus = status;
    this.onChange(status);
  }
}
