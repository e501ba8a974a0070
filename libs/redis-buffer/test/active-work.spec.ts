import { describe, expect, it } from '@jest/globals';
import { Subject } from 'rxjs';
import { ActiveWork, type Work } from '../src/core/respond/active-work.js';

const run = (): Work => ({ startedAt: 0 });

describe('ActiveWork', () => {
  it('keeps runs in start order: the oldest is the first still running', () => {
    const work = new ActiveWork(10, 10);
    const [a, b, c] = [run(), run(), run()];
    work.start(a, 100);
    work.start(b, 200);
    work.start(c, 300);
    expect(work.size).toBe(3);
    expect(work.oldestStart()).toBe(100);
    work.done(b);
    expect(work.oldestStart()).toBe(100);
    work.done(a);
    expect(work.oldestStart()).toBe(300);
    work.done(c);
    expect(work.size).toBe(0);
    expect(work.oldestStart()).toBeUndefined();
  });

  it('counts a run once: a second start or done changes nothing, and a slot frees only on the first done', () => {
    const work = new ActiveWork(1, 10);
    const a = run();
    let ran = 0;
    work.start(a, 1);
    work.start(a, 5);
    expect(work.size).toBe(1);
    expect(work.oldestStart()).toBe(1);
    expect(work.limiter.submit(() => ran++)).toBe(true);
    work.done(a);
    work.done(a);
    expect(ran).toBe(1);
    expect(work.size).toBe(0);
  });

  it('says when work starts while nothing ran, and only then', () => {
    const work = new ActiveWork(10, 10);
    let busy = 0;
    work.becameBusy = () => busy++;
    const [a, b] = [run(), run()];
    work.start(a, 1);
    work.start(b, 2);
    work.done(a);
    work.done(b);
    work.start(a, 3);
    expect(busy).toBe(2);
  });

  it('stops every run still going, ends each tracked stream, and forgets them; a run let go is not tracked again', () => {
    const work = new ActiveWork(10, 10);
    const [a, b, c] = [run(), run(), run()];
    const streams = [new Subject<number>(), new Subject<number>()];
    for (const [index, item] of [a, b, c].entries()) work.start(item, index);
    work.track(a, streams[0]!.subscribe());
    work.track(c, streams[1]!.subscribe());
    const stopped: Work[] = [];
    work.stopRunning((item) => stopped.push(item));
    expect(stopped).toEqual([a, b, c]);
    expect(streams.map((stream) => stream.observed)).toEqual([false, false]);
    expect(work.size).toBe(0);
    const late = new Subject<number>();
    work.track(b, late.subscribe());
    work.done(b);
    expect(late.observed).toBe(true);
    expect(work.size).toBe(0);
  });

  it('stays consistent over many interleaved starts and ends (seeded)', () => {
    const seed = 0x5eed;
    let state = seed;
    const random = (): number => ((state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    const work = new ActiveWork(1000, 0);
    const model: Work[] = [];
    for (let step = 0; step < 5000; step++) {
      if (model.length === 0 || random() < 0.55) {
        const item = run();
        work.start(item, step);
        model.push(item);
      } else {
        const [item] = model.splice(Math.floor(random() * model.length), 1);
        work.done(item!);
      }
      expect(work.size).toBe(model.length);
      expect(work.oldestStart()).toBe(model[0]?.startedAt);
    }
  });
});
