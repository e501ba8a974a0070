import { ConcurrencyLimiter } from '../src/core/respond/concurrency-limiter.js';
import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { resolveBufferOptions } from '../src/core/options.js';

describe('ConcurrencyLimiter', () => {
  function setup(maxRunning: number, maxQueued: number) {
    const running = new Set<number>();
    const started: number[] = [];
    const limiter = new ConcurrencyLimiter(maxRunning, maxQueued, () => running.size);
    const task = (n: number) => () => {
      started.push(n);
      running.add(n);
    };
    const finish = (n: number) => {
      running.delete(n);
      limiter.pump();
    };
    return { limiter, task, finish, started, running };
  }

  it('runs up to the bound, queues FIFO up to the queue bound, refuses past both', () => {
    const { limiter, task, finish, started } = setup(2, 2);
    expect([1, 2, 3, 4, 5].map((n) => limiter.submit(task(n)))).toEqual([true, true, true, true, false]);
    expect(started).toEqual([1, 2]);
    expect(limiter.queued).toBe(2);
    finish(1);
    expect(started).toEqual([1, 2, 3]);
    finish(2);
    finish(3);
    expect(started).toEqual([1, 2, 3, 4]);
    expect(limiter.queued).toBe(0);
  });

  it('a queued task that takes no slot (expired on start) lets the next one start', () => {
    const { limiter, task, finish, started } = setup(1, 10);
    limiter.submit(task(1));
    limiter.submit(() => started.push(-2)); // ends at once, holds nothing
    limiter.submit(task(3));
    finish(1);
    expect(started).toEqual([1, -2, 3]);
  });

  it('a new request does not overtake queued ones', () => {
    const { limiter, task, started, running } = setup(1, 10);
    limiter.submit(task(1));
    limiter.submit(task(2));
    running.clear(); // a slot frees, but pump() has not run yet
    limiter.submit(task(3));
    expect(started).toEqual([1]);
    limiter.pump();
    expect(started).toEqual([1, 2]);
  });

  it('maxQueuedHandlers 0 refuses at once past maxConcurrentHandlers', () => {
    const { limiter, task } = setup(1, 0);
    expect(limiter.submit(task(1))).toBe(true);
    expect(limiter.submit(task(2))).toBe(false);
  });

  it('options: defaults and validation', () => {
    expect(resolveBufferOptions()).toMatchObject({ maxConcurrentHandlers: 1024, maxQueuedHandlers: 10_000 });
    expect(resolveBufferOptions({ maxQueuedHandlers: 0 }).maxQueuedHandlers).toBe(0);
    expect(() => resolveBufferOptions({ maxConcurrentHandlers: 0 })).toThrow(InvalidOptionsError);
    expect(() => resolveBufferOptions({ maxQueuedHandlers: -1 })).toThrow(/maxQueuedHandlers/);
  });
});
