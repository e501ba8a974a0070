/** The logging surface the core needs; Nest's `Logger` and `console` both satisfy it. */
export interface BufferLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

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
    private readonly burst = 10,
    private readonly windowMs = 10_000,
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
