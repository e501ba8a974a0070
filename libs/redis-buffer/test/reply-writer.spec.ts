import { Coalescer } from '../src/core/bus/coalescer.js';
import { ReplyWriter, toWireError } from '../src/core/respond/reply-writer.js';

function setup(maxPayloadBytes = 10_000) {
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
  const writer = new ReplyWriter(coalescer, 'inbox', 'r1', '"me"', maxPayloadBytes, () => undefined);
  const envelopes = () => published.flatMap((message) => [JSON.parse(message)].flat());
  return { writer, flush: () => flush?.(), envelopes };
}

describe('ReplyWriter', () => {
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
});
