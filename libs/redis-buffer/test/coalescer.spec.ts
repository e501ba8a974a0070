import { Coalescer } from '../src/core/bus/coalescer.js';

function item(text: string) {
  return { bytes: text.length, encode: () => text };
}

describe('Coalescer', () => {
  function setup(limits = { maxBatchBytes: 1000, maxBatchCount: 100 }) {
    const published: Array<[string, string]> = [];
    let flush: (() => void) | undefined;
    const coalescer = new Coalescer(
      async (channel, message) => {
        published.push([channel, message]);
        return 7;
      },
      limits,
      (callback) => (flush = callback),
    );
    return { coalescer, published, flush: () => flush?.() };
  }

  it('sends everything queued for one channel in one turn as one message', async () => {
    const { coalescer, published, flush } = setup();
    coalescer.enqueue('c1', item('{"a":1}'));
    coalescer.enqueue('c1', item('{"a":2}'));
    coalescer.enqueue('c2', item('{"b":1}'));
    expect(published).toEqual([]);
    flush();
    expect(published).toEqual([
      ['c1', '[{"a":1},{"a":2}]'],
      ['c2', '{"b":1}'],
    ]);
  });

  it('puts the head an encoded item asks for first in its batch, once, even for a batch of one', () => {
    const { coalescer, published, flush } = setup();
    const headed = (text: string, head: string) => ({ bytes: text.length, batchHead: undefined as string | undefined, encode() { this.batchHead = head; return text; } });
    coalescer.enqueue('c1', item('{"a":1}'));
    coalescer.enqueue('c1', headed('["r1"]', '{"h":1}'));
    coalescer.enqueue('c1', headed('["r2"]', '{"h":1}'));
    coalescer.enqueue('c2', headed('["r3"]', '{"h":2}'));
    coalescer.enqueue('c3', item('{"b":1}'));
    flush();
    expect(published).toEqual([
      ['c1', '[{"h":1},{"a":1},["r1"],["r2"]]'],
      ['c2', '[{"h":2},["r3"]]'],
      ['c3', '{"b":1}'],
    ]);
  });

  it('keeps channels apart however they alternate, across a full batch and a flush', () => {
    const { coalescer, published, flush } = setup({ maxBatchBytes: 1000, maxBatchCount: 2 });
    // Channel names equal in content but not the same string object, as JSON.parse hands them out.
    const c1 = (): string => JSON.parse('"c1"') as string;
    coalescer.enqueue(c1(), item('{"a":1}'));
    coalescer.enqueue('c2', item('{"b":1}'));
    coalescer.enqueue(c1(), item('{"a":2}'));
    coalescer.enqueue(c1(), item('{"a":3}'));
    expect(published).toEqual([['c1', '[{"a":1},{"a":2}]']]);
    coalescer.enqueue('c2', item('{"b":2}'));
    flush();
    coalescer.enqueue(c1(), item('{"a":4}'));
    flush();
    expect(published).toEqual([
      ['c1', '[{"a":1},{"a":2}]'],
      ['c2', '[{"b":1},{"b":2}]'],
      ['c1', '{"a":3}'],
      ['c1', '{"a":4}'],
    ]);
  });

  it('tells every envelope in a batch the receiver count of its PUBLISH', async () => {
    const { coalescer, flush } = setup();
    const counts: number[] = [];
    coalescer.enqueue('c', item('{}'), (_error, receivers) => counts.push(receivers));
    coalescer.enqueue('c', item('{}'), (_error, receivers) => counts.push(receivers));
    flush();
    await new Promise((resolve) => setImmediate(resolve));
    expect(counts).toEqual([7, 7]);
  });

  it('starts a new message when the byte or count bound would be passed', () => {
    const { coalescer, published, flush } = setup({ maxBatchBytes: 20, maxBatchCount: 2 });
    coalescer.enqueue('c', item('{"n":1}'));
    coalescer.enqueue('c', item('{"n":2}'));
    coalescer.enqueue('c', item('{"n":3}'));
    expect(published).toEqual([['c', '[{"n":1},{"n":2}]']]);
    flush();
    expect(published[1]).toEqual(['c', '{"n":3}']);
  });

  describe('with an early batch count', () => {
    /** A coalescer whose PUBLISHes stay unanswered until `answer()` (Redis busy), or fail with `fail()`. */
    function held() {
      const published: string[] = [];
      const waiting: Array<{ resolve: (receivers: number) => void; reject: (error: Error) => void }> = [];
      let flush: (() => void) | undefined;
      const coalescer = new Coalescer(
        (_channel, message) => {
          published.push(message);
          return new Promise<number>((resolve, reject) => waiting.push({ resolve, reject }));
        },
        { maxBatchBytes: 1000, maxBatchCount: 5, earlyBatchCount: 2 },
        (callback) => (flush = callback),
      );
      const settled = () => new Promise((resolve) => setImmediate(resolve));
      return {
        coalescer,
        published,
        flush: () => flush?.(),
        answer: async (receivers = 1) => {
          for (const publish of waiting.splice(0)) publish.resolve(receivers);
          await settled();
        },
        fail: async () => {
          for (const publish of waiting.splice(0)) publish.reject(new Error('down'));
          await settled();
        },
      };
    }

    it('sends a batch at the early count at once while no PUBLISH is unanswered, and the rest of the turn after', () => {
      const { coalescer, published, flush } = held();
      coalescer.enqueue('c', item('{"n":1}'));
      coalescer.enqueue('c', item('{"n":2}'));
      expect(published).toEqual([]);
      coalescer.enqueue('c', item('{"n":3}'));
      expect(published).toEqual(['[{"n":1},{"n":2}]']);
      coalescer.enqueue('c', item('{"n":4}'));
      coalescer.enqueue('c', item('{"n":5}'));
      flush();
      expect(published).toEqual(['[{"n":1},{"n":2}]', '[{"n":3},{"n":4},{"n":5}]']);
    });

    it('lets batches grow to the count limit while a PUBLISH is unanswered, and goes early again once answered', async () => {
      const { coalescer, published, flush, answer, fail } = held();
      for (let n = 1; n <= 3; n++) coalescer.enqueue('c', item(`{"n":${n}}`));
      // One PUBLISH out and unanswered: the next batch closes at the limit (5), not at 2.
      for (let n = 4; n <= 9; n++) coalescer.enqueue('c', item(`{"n":${n}}`));
      expect(published).toEqual(['[{"n":1},{"n":2}]', '[{"n":3},{"n":4},{"n":5},{"n":6},{"n":7}]']);
      flush();
      expect(published.at(-1)).toBe('[{"n":8},{"n":9}]');
      await answer();
      for (let n = 10; n <= 12; n++) coalescer.enqueue('c', item(`{"n":${n}}`));
      expect(published.at(-1)).toBe('[{"n":10},{"n":11}]');
      flush();
      // A failed PUBLISH is answered too: it does not hold the next batches to the limit.
      await fail();
      for (let n = 13; n <= 15; n++) coalescer.enqueue('c', item(`{"n":${n}}`));
      expect(published.at(-1)).toBe('[{"n":13},{"n":14}]');
    });

    it('raises the early count by itself for every four receivers the channel last reached, on that channel only', async () => {
      const { coalescer, published, flush, answer } = held();
      for (let n = 1; n <= 3; n++) coalescer.enqueue('wide', item(`{"n":${n}}`));
      flush();
      expect(published).toEqual(['[{"n":1},{"n":2}]', '{"n":3}']);
      // 9 receivers: the early count is 2 x 3 = 6, above the limit (5), so only the limit cuts.
      await answer(9);
      for (let n = 4; n <= 9; n++) coalescer.enqueue('wide', item(`{"n":${n}}`));
      expect(published.slice(2)).toEqual(['[{"n":4},{"n":5},{"n":6},{"n":7},{"n":8}]']);
      flush();
      await answer(8);
      // 8 receivers: 2 x 2 = 4.
      for (let n = 10; n <= 14; n++) coalescer.enqueue('wide', item(`{"n":${n}}`));
      expect(published.at(-1)).toBe('[{"n":10},{"n":11},{"n":12},{"n":13}]');
      flush();
      await answer(8);
      // Another channel, never published to: the early count itself.
      for (let n = 15; n <= 17; n++) coalescer.enqueue('narrow', item(`{"n":${n}}`));
      expect(published.at(-1)).toBe('[{"n":15},{"n":16}]');
      flush();
      await answer(1);
      // 'wide' still cuts at 4.
      for (let n = 18; n <= 22; n++) coalescer.enqueue('wide', item(`{"n":${n}}`));
      expect(published.at(-1)).toBe('[{"n":18},{"n":19},{"n":20},{"n":21}]');
      flush();
      // Back to four receivers or fewer: the early count itself again.
      await answer(4);
      for (let n = 23; n <= 25; n++) coalescer.enqueue('wide', item(`{"n":${n}}`));
      expect(published.at(-1)).toBe('[{"n":23},{"n":24}]');
    });
  });

  it('reports a failed PUBLISH to each envelope of the batch', async () => {
    const failing = new Coalescer(() => Promise.reject(new Error('down')), { maxBatchBytes: 100, maxBatchCount: 10 }, (flush) => flush());
    const errors: string[] = [];
    failing.enqueue('c', item('{}'), (error) => errors.push(error!.message));
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toEqual(['down']);
  });

  it('leaves out envelopes cancelled before the flush, and sends nothing when all were', () => {
    const { coalescer, published, flush } = setup();
    const cancelled = { bytes: 2, encode: () => '{"x":1}', cancelled: true };
    coalescer.enqueue('c1', cancelled);
    coalescer.enqueue('c1', item('{"a":1}'));
    coalescer.enqueue('c2', cancelled);
    flush();
    expect(published).toEqual([['c1', '{"a":1}']]);
  });
});
