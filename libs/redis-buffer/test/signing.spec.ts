import { EventEmitter } from 'node:events';
import { GuardedBus, INBOUND_ALLOWANCE_BYTES, type InboundRejection } from '../src/core/bus/guarded-bus.js';
import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { resolveBufferOptions } from '../src/core/options.js';
import type { BusEvents, BusStatus, RedisBus } from '../src/core/bus/redis-bus.js';
import { MessageSigner, SIGNED_PREFIX } from '../src/core/wire/signing.js';

const KEY = 'a-shared-key-of-32-characters!!!';

describe('MessageSigner', () => {
  const signer = new MessageSigner(KEY);

  it('round-trips a single envelope and a batch, byte for byte', () => {
    for (const body of ['{"v":1,"kind":"reply","id":"x","from":"a","seq":0,"done":true,"data":"é☃"}', '[{"v":1},{"v":1}]']) {
      const sealed = signer.seal('rb:inbox:c', body);
      expect(sealed.startsWith(SIGNED_PREFIX)).toBe(true);
      expect(JSON.parse(sealed)).toMatchObject({ v: 1, kind: 'signed', body: JSON.parse(body) });
      expect(signer.open('rb:inbox:c', sealed)).toEqual({ body });
    }
  });

  it('refuses unsigned, tampered, wrong-key and wrong-channel messages', () => {
    const body = '{"v":1,"kind":"reply","id":"x","from":"a","seq":0,"done":true,"data":1}';
    const sealed = signer.seal('rb:inbox:c', body);
    expect(signer.open('rb:inbox:c', body)).toEqual({ failure: 'unsigned' });
    expect(signer.open('rb:inbox:c', sealed.replace('"data":1', '"data":2'))).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', new MessageSigner('another-key-of-enough-length').seal('rb:inbox:c', body))).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:other', sealed)).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', `${SIGNED_PREFIX}${'z'.repeat(64)}","body":${body}}`)).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', `${SIGNED_PREFIX}${'0'.repeat(64)}","body":${body}}`)).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', sealed.slice(0, -1))).toEqual({ failure: 'forged' }); // truncated
    expect(signer.open('rb:inbox:c', SIGNED_PREFIX)).toEqual({ failure: 'unsigned' });
  });

  it('is built the way docs/protocol.md tells another language to build it', async () => {
    const { createHmac } = await import('node:crypto');
    const body = '{"v":1}';
    const sig = createHmac('sha256', KEY).update('rb:req:x\n' + body).digest('hex');
    expect(signer.seal('rb:req:x', body)).toBe(`{"v":1,"kind":"signed","sig":"${sig}","body":${body}}`);
  });
});

describe('key rotation', () => {
  it('signs with the first key and accepts any key of the list', () => {
    const oldKey = 'the-old-key-0123456789';
    const newKey = 'the-new-key-9876543210';
    const old = new MessageSigner(oldKey);
    const rotating = new MessageSigner([newKey, oldKey]);
    const renewed = new MessageSigner(newKey);
    const fromOld = old.seal('rb:req:x', '{"v":1}');
    const fromRotating = rotating.seal('rb:req:x', '{"v":1}');
    expect(rotating.open('rb:req:x', fromOld)).toEqual({ body: '{"v":1}' });
    expect(old.open('rb:req:x', fromRotating)).toEqual({ failure: 'forged' });
    expect(renewed.open('rb:req:x', fromRotating)).toEqual({ body: '{"v":1}' });
    expect(renewed.open('rb:req:x', fromOld)).toEqual({ failure: 'forged' });
  });
});

describe('signingKey option', () => {
  it('is off by default and refuses short keys', () => {
    expect(resolveBufferOptions().signingKeys).toEqual([]);
    expect(resolveBufferOptions({ signingKey: KEY }).signingKeys).toEqual([KEY]);
    expect(resolveBufferOptions({ signingKey: [KEY, `${KEY}-old`] }).signingKeys).toEqual([KEY, `${KEY}-old`]);
    expect(() => resolveBufferOptions({ signingKey: [] })).toThrow(/empty list/);
    expect(() => resolveBufferOptions({ signingKey: [KEY, 'short'] })).toThrow(InvalidOptionsError);
    expect(() => resolveBufferOptions({ signingKey: 'short' })).toThrow(InvalidOptionsError);
    expect(() => resolveBufferOptions({ signingKey: 42 as never })).toThrow(/signingKey/);
  });
});

class FakeBus extends EventEmitter<BusEvents> implements RedisBus {
  status: BusStatus = 'connected';
  published: Array<[string, string]> = [];
  connect = async (): Promise<void> => undefined;
  publish = async (channel: string, message: string): Promise<number> => (this.published.push([channel, message]), 1);
  subscribe = async (): Promise<void> => undefined;
  unsubscribe = async (): Promise<void> => undefined;
  numsub = async (): Promise<number> => 0;
  checkPermissions = async (): Promise<void> => undefined;
  close = async (): Promise<void> => undefined;
  unwrap = (): never => {
    throw new Error('fake');
  };
}

describe('GuardedBus', () => {
  function setup(signingKey?: string) {
    const inner = new FakeBus();
    const rejected: InboundRejection[] = [];
    const bus = new GuardedBus(inner, { maxPayloadBytes: 1000, signingKeys: signingKey === undefined ? [] : [signingKey] }, (reason) => rejected.push(reason));
    const received: string[] = [];
    bus.on('message', (_channel, message) => received.push(message));
    return { inner, bus, rejected, received };
  }

  it('drops messages over maxPayloadBytes (plus the envelope allowance) before parsing', () => {
    const { inner, rejected, received } = setup();
    inner.emit('message', 'c', 'x'.repeat(1000 + INBOUND_ALLOWANCE_BYTES));
    inner.emit('message', 'c', 'x'.repeat(1001 + INBOUND_ALLOWANCE_BYTES));
    expect(received).toHaveLength(1);
    expect(rejected).toEqual(['oversized']);
  });

  it('with a key: signs what it publishes, passes only messages signed for their channel', async () => {
    const { inner, bus, rejected, received } = setup(KEY);
    await bus.publish('c', '{"v":1}');
    const [[channel, sealed]] = inner.published as [[string, string]];
    expect(channel).toBe('c');
    inner.emit('message', 'c', sealed);
    inner.emit('message', 'c', '{"v":1}');
    inner.emit('message', 'd', sealed);
    expect(received).toEqual(['{"v":1}']);
    expect(rejected).toEqual(['unsigned', 'forged']);
  });

  it('does not throw on a Redis error nobody listens to, and forwards it to those who do', () => {
    const { inner, bus } = setup();
    expect(() => inner.emit('error', new Error('x'))).not.toThrow();
    const errors: Error[] = [];
    bus.on('error', (error) => errors.push(error));
    inner.emit('error', new Error('y'));
    expect(errors.map((e) => e.message)).toEqual(['y']);
  });
});
