/** The logging surface the core needs; Nest's `Logger` and `console` both satisfy it. */
export interface BufferLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/**
 * How many Redis connection errors (refused, reset, TLS, "All sentinels are unreachable"…) an
 * instance or a caller logs: at most 3 per 30 s each, then one line with how many were suppressed.
 * An outage repeats the same error on every reconnection attempt.
 */
export const REDIS_ERROR_LOG_BOUND = { burst: 3, windowMs: 30_000 } as const;

/** How many lines about bad input (malformed, forged, oversized messages…) one process logs: at most 10 per 10 s. */
export const BAD_INPUT_LOG_BOUND = { burst: 10, windowMs: 10_000 } as const;

/**
 * Logs at most `burst` messages per `windowMs`, then one line saying how many were suppressed, so a
 * flood of bad input cannot flood the logs (or the disk) as well.
 */
export class BoundedLog {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly logger: BufferLogger,
    private readonly burst: number = BAD_INPUT_LOG_BOUND.burst,
    private readonly windowMs: number = BAD_INPUT_LOG_BOUND.windowMs,
    private readonly now: () => number = Date.now,
  ) {}

  warn(message: string): void {
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      if (this.suppressed > 0) this.logger.warn(`${this.suppressed} similar messages suppressed in the last ${this.windowMs} ms`);
      this.windowStart = now;
      this.inWindow = 0;
      this.suppressed = 0;
    }
    if (this.inWindow < this.burst) {
      this.inWindow++;
      this.logger.warn(message);
    } else {
      this.suppressed++;
    }
  }
}
