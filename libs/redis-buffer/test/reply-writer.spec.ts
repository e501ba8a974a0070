import { Coalescer } from '../src/core/bus/coalescer.js';
import { ConnectionLostError } from '../src/core/errors/connection-lost.error.js';
import { ReplyResend } from '../src/core/respond/reply-resend.js';
import { ReplyWriter, toWireError } from '../src/core/respond/reply-writer.js';
import { FakeClock } from './fake-clock.js';

function setup(maxPayloadBytes = 10_000, compact = false) {
  const published: string[] = [];
  let flush: (() => void) | undefined;
  const coalescer = new Coalescer(
    async (_channel, message) => {
      published.push(message);
      return 1;
    },
    { maxBatchBytes: maxPayloadBytes, maxBatchCount: 100 },
    (callback) => (flush = callback),
  );
  const writer = new ReplyWriter(coalescer, 'inbox', 'r1', '"me"', maxPayloadBytes, { holdForResend: () => false, lost: () => undefined }, undefined, compact);
  const envelopes = () => published.flatMap((message) => [JSON.parse(message)].flat());
  return { writer, flush: () => flush?.(), envelopes, published };
}

describe('ReplyWriter', () => {
  it('writes values in the compact form for a caller that reads it, and everything else as objects', () => {
    const { writer, flush, published } = setup(10_000, true);
    writer.value({ a: 1 });
    flush();
    writer.value(null);
    writer.end();
    flush();
    // Each message is a batch (a lone compact reply is one too); done decided late still lands.
    expect(published).toEqual(['[["r1","me",0,false,{"a":1}]]', '[["r1","me",1,true,null]]']);
    const stream = setup(10_000, true);
    stream.writer.value(1);
    stream.flush();
    stream.writer.end();
    stream.writer.error(new Error('ignored after the end'));
    stream.flush();
    expect(stream.published).toEqual(['[["r1","me",0,false,1]]', '{"v":1,"kind":"reply","id":"r1","from":"me","seq":1,"done":true}']);
    const failed = setup(10_000, true);
    failed.writer.error({ code: 'X' });
    failed.flush();
    expect(failed.published).toEqual(['{"v":1,"kind":"reply","id":"r1","from":"me","seq":0,"done":true,"error":{"code":"X"}}']);
    const refused = setup(10_000, true);
    refused.writer.refuse('BUFFER_EXPIRED', 'late');
    refused.flush();
    expect(refused.envelopes()).toEqual([{ v: 1, kind: 'reply', id: 'r1', from: 'me', seq: 0, done: true, refused: true, error: { code: 'BUFFER_EXPIRED', message: 'late' } }]);
  });

  it('sends a value and the end in the same turn as one envelope with done: true', () => {
    const { writer, flush, envelopes } = setup();
    writer.value({ a: 1 });
    writer.end();
    flush();
    expect(envelopes()).toEqual([{ v: 1, kind: 'reply', id: 'r1', from: 'me', seq: 0, done: true, data: { a: 1 } }]);
  });

  it('numbers a stream and ends it with a done marker when the last value already left', () => {
    const { writer, flush, envelopes } = setup();
    writer.value(1);
    writer.value(2);
    flush();
    writer.end();
    flush();
    expect(envelopes().map((e) => [e.seq, e.done, e.data])).toEqual([
      [0, false, 1],
      [1, false, 2],
      [2, true, undefined],
    ]);
  });

  it('replaces a value over the payload limit by a typed error reply', () => {
    const { writer, flush, envelopes } = setup(500);
    writer.value('x'.repeat(1000));
    writer.value('ignored after the error');
    flush();
    const [envelope] = envelopes();
    expect(envelope.done).toBe(true);
    expect(envelope.error.code).toBe('BUFFER_REPLY_TOO_LARGE');
    expect(envelopes()).toHaveLength(1);
  });

  it('turns an unserializable value into a bad-message error reply', () => {
    const { writer, flush, envelopes } = setup();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    writer.value(circular);
    flush();
    expect(envelopes()[0].error.code).toBe('BUFFER_BAD_MESSAGE');
  });

  it('encodes undefined as null, so a reply always says it has a value', () => {
    const { writer, flush, envelopes } = setup();
    writer.value(undefined);
    writer.end();
    flush();
    expect(envelopes()[0]).toMatchObject({ data: null, done: true });
  });

  it('sends an Error as name and message, and other errors as they are', () => {
    expect(toWireError(Object.assign(new TypeError('bad'), { code: 'E1' }))).toEqual({ name: 'TypeError', message: 'bad', code: 'E1' });
    expect(toWireError({ status: 'error', message: 'x' })).toEqual({ status: 'error', message: 'x' });
  });

  describe('sent again after a reconnect (ReplyResend)', () => {
    /** A writer whose PUBLISH fails while `down`, with its resend queue on a fake clock. */
    function failing() {
      const clock = new FakeClock();
      const published: string[] = [];
      const lost: string[] = [];
      let down = false;
      const turns: Array<() => void> = [];
      const runTurns = async (): Promise<void> => {
        for (let i = 0; i < 10; i++) {
          await Promise.resolve();
          await new Promise((resolve) => setImmediate(resolve));
          turns.splice(0).forEach((turn) => turn());
        }
      };
      const coalescer = new Coalescer(
        async (_channel, message) => {
          if (down) throw new ConnectionLostError('the connection closed while a PUBLISH was in flight');
          published.push(message);
          return 1;
        },
        { maxBatchBytes: 10_000, maxBatchCount: 100 },
        (callback) => turns.push(callback),
      );
      const stats = { replyPublishFailures: 0, repliesResent: 0 };
      const resend = new ReplyResend(clock, () => !down, (callback) => turns.push(callback), stats, { warn: (message: string) => lost.push(message) });
      const writer = new ReplyWriter(coalescer, 'inbox', 'r1', '"me"', 10_000, resend, clock.now() + 1000);
      const envelopes = () => published.flatMap((message) => [JSON.parse(message)].flat()).map((e: { seq: number; done: boolean; data?: unknown }) => [e.seq, e.done, e.data]);
      return { clock, writer, resend, runTurns, envelopes, lost, setDown: (value: boolean) => (down = value), resent: () => stats.repliesResent };
    }

    it('keeps failed replies and what follows them, and publishes them in order once connected', async () => {
      const { writer, resend, runTurns, envelopes, lost, setDown, resent } = failing();
      writer.value(1);
      await runTurns();
      setDown(true);
      writer.value(2);
      await runTurns();
      // Written while the failed one waits: behind it, not before it.
      writer.value(3);
      writer.end();
      setDown(false);
      resend.reconnected();
      await runTurns();
      expect(envelopes()).toEqual([
        [0, false, 1],
        [1, false, 2],
        [2, true, 3],
      ]);
      expect(lost).toEqual([]);
      expect(resent()).toBe(1);
    });

    it('drops what waited once the deadline has passed, and counts it lost', async () => {
      const { clock, writer, resend, runTurns, envelopes, lost, setDown } = failing();
      setDown(true);
      writer.value(1);
      writer.end();
      await runTurns();
      clock.advance(1000);
      setDown(false);
      resend.reconnected();
      await runTurns();
      expect(envelopes()).toEqual([]);
      expect(lost).toEqual([expect.stringContaining("after the request's deadline")]);
    });

    it('loses what waits when the instance closes before the connection is back', async () => {
      const { writer, resend, runTurns, envelopes, lost, setDown } = failing();
      setDown(true);
      writer.value(1);
      writer.end();
      await runTurns();
      resend.close();
      expect(envelopes()).toEqual([]);
      expect(lost).toEqual([expect.stringContaining('closed before the connection came back')]);
    });
  });
});
