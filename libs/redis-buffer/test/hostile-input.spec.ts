import { decodeMessage } from '../src/core/wire/decode.js';

// Found by the fault suite (test/faults/bad-input): every bad message must be counted once.
describe('hostile input is counted', () => {
  it('an empty batch is rejected as malformed, not dropped unseen', () => {
    const { envelopes, rejected } = decodeMessage('[]', 'rb:req:x');
    expect(envelopes).toHaveLength(0);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.error.code).toBe('BUFFER_BAD_MESSAGE');
    expect(rejected[0]!.error.message).toContain('empty batch');
  });

  it('headers named __proto__ are refused even when the JSON parser made them own properties', () => {
    const raw = `{"v":1,"kind":"request","id":"a","pattern":"p","from":"f","replyTo":"r","deadline":1,"headers":{"__proto__":"x"},"data":null}`;
    expect(decodeMessage(raw).rejected).toHaveLength(1);
  });
});
