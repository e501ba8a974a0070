import { jest } from '@jest/globals';
import { TimerPool } from '../src/core/clock.js';
import { FakeClock } from './fake-clock.js';

describe('TimerPool', () => {
  it('fires timers of one duration in order, each at its own due time, with one underlying timer', () => {
    const clock = new FakeClock();
    const pool = new TimerPool(clock);
    const fired: string[] = [];
    pool.setTimer(() => fired.push('a'), 100);
    clock.advance(30);
    pool.setTimer(() => fired.push('b'), 100);
    clock.advance(30);
    pool.setTimer(() => fired.push('c'), 100);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(39);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual(['a']);
    clock.advance(29);
    expect(fired).toEqual(['a']);
    clock.advance(1);
    expect(fired).toEqual(['a', 'b']);
    clock.advance(30);
    expect(fired).toEqual(['a', 'b', 'c']);
    expect(clock.pendingTimers).toBe(0);
    expect(pool.pending).toBe(0);
  });

  it('never fires a cleared timer, including the oldest', () => {
    const clock = new FakeClock();
    const pool = new TimerPool(clock);
    const fired: string[] = [];
    const a = pool.setTimer(() => fired.push('a'), 50);
    pool.setTimer(() => fired.push('b'), 50);
    const c = pool.setTimer(() => fired.push('c'), 50);
    pool.clearTimer(a);
    pool.clearTimer(c);
    pool.clearTimer(c);
    expect(pool.pending).toBe(1);
    clock.advance(100);
    expect(fired).toEqual(['b']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps durations apart: a short timer set after a long one fires first', () => {
    const clock = new FakeClock();
    const pool = new TimerPool(clock);
    const fired: string[] = [];
    pool.setTimer(() => fired.push('long'), 1000);
    pool.setTimer(() => fired.push('short'), 10);
    clock.advance(10);
    expect(fired).toEqual(['short']);
    clock.advance(990);
    expect(fired).toEqual(['short', 'long']);
  });

  it('holds memory for live timers only: cleared ones are compacted away', () => {
    const clock = new FakeClock();
    const pool = new TimerPool(clock);
    const live = pool.setTimer(() => undefined, 30_000);
    for (let index = 0; index < 100_000; index++) pool.clearTimer(pool.setTimer(() => undefined, 30_000));
    expect(pool.pending).toBe(1);
    const queue = (pool as unknown as { queues: Map<number, { entries: unknown[] }> }).queues.get(30_000)!;
    expect(queue.entries.length).toBeLessThan(200);
    pool.clearTimer(live);
    clock.advance(30_000);
    expect(clock.pendingTimers).toBe(0);
    expect(pool.pending).toBe(0);
  });

  it('a timer set from a firing callback, and a callback that throws, stop nothing', () => {
    const clock = new FakeClock();
    const pool = new TimerPool(clock);
    const fired: string[] = [];
    // The error is rethrown on its own (as from a timer of its own): capture where it goes.
    const rethrows: Array<() => void> = [];
    const spy = jest.spyOn(globalThis, 'queueMicrotask').mockImplementation((task) => void rethrows.push(task));
    try {
      pool.setTimer(() => {
        fired.push('first');
        pool.setTimer(() => fired.push('again'), 20);
        throw new Error('callback failed');
      }, 20);
      pool.setTimer(() => fired.push('second'), 20);
      clock.advance(20);
      expect(fired).toEqual(['first', 'second']);
      clock.advance(20);
      expect(fired).toEqual(['first', 'second', 'again']);
    } finally {
      spy.mockRestore();
    }
    expect(rethrows).toHaveLength(1);
    expect(() => rethrows[0]!()).toThrow('callback failed');
  });

  it('uses real timers that do not keep the process alive', async () => {
    const pool = new TimerPool();
    const started = performance.now();
    const elapsed = await new Promise<number>((resolve) => pool.setTimer(() => resolve(performance.now() - started), 15));
    expect(elapsed).toBeGreaterThanOrEqual(14);
    expect(pool.pending).toBe(0);
  });
});
