import { EventEmitter } from 'node:events';
import { GuardedBus, INBOUND_ALLOWANCE_BYTES, type InboundRejection } from '../src/core/bus/guarded-bus.js';
import { InvalidOptionsError } from '../src/core/errors/invalid-options.error.js';
import { resolveBufferOptions } from '../src/core/options.js';
import type { BusEvents, BusStatus, RedisBus } from '../src/core/bus/redis-bus.js';
import { ReplayGuard } from '../src/core/wire/replay-guard.js';
import { MessageSigner, SIGNED_PREFIX } from '../src/core/wire/signing.js';

const KEY = 'a-shared-key-of-32-characters!!!';

describe('MessageSigner', () => {
  const signer = new MessageSigner(KEY);

  it('round-trips a single envelope and a batch, byte for byte', () => {
    for (const body of ['{"v":1,"kind":"reply","id":"x","from":"a","seq":0,"done":true,"data":"é☃"}', '[{"v":1},{"v":1}]']) {
      const sealed = signer.seal('rb:inbox:c', body);
      expect(sealed.startsWith(SIGNED_PREFIX)).toBe(true);
      expect(JSON.parse(sealed)).toMatchObject({ v: 1, kind: 'signed', src: signer.src, body: JSON.parse(body) });
      expect(signer.open('rb:inbox:c', sealed)).toMatchObject({ body, stamp: { src: signer.src } });
    }
  });

  it('stamps each message with its signer, the next sequence number and the clock', () => {
    let now = 1_764_000_000_000;
    const clocked = new MessageSigner(KEY, () => now);
    const first = clocked.open('c', clocked.seal('c', '{"v":1}'));
    now += 5;
    const second = clocked.open('c', clocked.seal('d', '{"v":1}'));
    const third = clocked.open('c', clocked.seal('c', '{"v":1}'));
    expect(first).toEqual({ body: '{"v":1}', stamp: { src: clocked.src, seq: 0, at: 1_764_000_000_000 } });
    expect(second).toEqual({ failure: 'forged' }); // sealed for another channel
    expect(third).toEqual({ body: '{"v":1}', stamp: { src: clocked.src, seq: 2, at: 1_764_000_000_005 } });
    expect(new MessageSigner(KEY).src).not.toBe(clocked.src);
  });

  it('refuses unsigned, tampered, wrong-key and wrong-channel messages', () => {
    const body = '{"v":1,"kind":"reply","id":"x","from":"a","seq":0,"done":true,"data":1}';
    const sealed = signer.seal('rb:inbox:c', body);
    expect(signer.open('rb:inbox:c', body)).toEqual({ failure: 'unsigned' });
    expect(signer.open('rb:inbox:c', sealed.replace('"data":1', '"data":2'))).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', new MessageSigner('another-key-of-enough-length').seal('rb:inbox:c', body))).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:other', sealed)).toEqual({ failure: 'forged' });
    const stamp = sealed.slice(SIGNED_PREFIX.length + 64, sealed.indexOf(',"body":'));
    expect(signer.open('rb:inbox:c', `${SIGNED_PREFIX}${'z'.repeat(64)}${stamp},"body":${body}}`)).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', `${SIGNED_PREFIX}${'0'.repeat(64)}${stamp},"body":${body}}`)).toEqual({ failure: 'forged' });
    // The stamp is signed: another seq or time breaks the signature.
    expect(signer.open('rb:inbox:c', sealed.replace(/"seq":\d+/, '"seq":99'))).toEqual({ failure: 'forged' });
    expect(signer.open('rb:inbox:c', sealed.replace(/"at":(\d+)/, (_m, at: string) => `"at":${Number(at) + 60_000}`))).toEqual({ failure: 'forged' });
    // The wrapper of the earlier format (no stamp), and malformed stamps, are not signed messages.
    expect(signer.open('rb:inbox:c', `${SIGNED_PREFIX}${'0'.repeat(64)}","body":${body}}`)).toEqual({ failure: 'unsigned' });
    expect(signer.open('rb:inbox:c', sealed.replace(/"seq":\d+/, '"seq":-1'))).toEqual({ failure: 'unsigned' });
    expect(signer.open('rb:inbox:c', sealed.replace(/"seq":(\d+)/, '"seq":0$1'))).toEqual({ failure: 'unsigned' });
    expect(signer.open('rb:inbox:c', sealed.replace(/"src":"[^"]+"/, '"src":"a b"'))).toEqual({ failure: 'unsigned' });
    expect(signer.open('rb:inbox:c', sealed.slice(0, -1))).toEqual({ failure: 'forged' }); // truncated
    expect(signer.open('rb:inbox:c', SIGNED_PREFIX)).toEqual({ failure: 'unsigned' });
  });

  it('is built the way docs/protocol.md tells another language to build it', async () => {
    const { createHmac } = await import('node:crypto');
    const body = '{"v":1}';
    const clocked = new MessageSigner(KEY, () => 1_764_000_000_123);
    clocked.seal('rb:req:x', body);
    const src = clocked.src;
    const sig = createHmac('sha256', KEY).update(`rb:req:x\n${src}\n1\n1764000000123\n${body}`).digest('hex');
    expect(clocked.seal('rb:req:x', body)).toBe(`{"v":1,"kind":"signed","sig":"${sig}","src":"${src}","seq":1,"at":1764000000123,"body":${body}}`);
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
    expect(rotating.open('rb:req:x', fromOld)).toMatchObject({ body: '{"v":1}' });
    expect(old.open('rb:req:x', fromRotating)).toEqual({ failure: 'forged' });
    expect(renewed.open('rb:req:x', fromRotating)).toMatchObject({ body: '{"v":1}' });
    expect(renewed.open('rb:req:x', fromOld)).toEqual({ failure: 'forged' });
  });

  it('the three-step order never has a process refuse what another signs; the two-step order does', () => {
    const [oldKey, newKey] = ['the-old-key-0123456789', 'the-new-key-9876543210'];
    // Every state a fleet passes through, one process redeployed at a time: each step's config
    // beside the previous step's; every pair must accept each other's signatures.
    const lossless = [[oldKey], [oldKey, newKey], [newKey, oldKey], [newKey]];
    const twoStep = [[oldKey], [newKey, oldKey], [newKey]];
    const refusals = (steps: string[][]): number => {
      let count = 0;
      for (let step = 1; step < steps.length; step++) {
        const configs = [steps[step - 1]!, steps[step]!];
        for (const from of configs) for (const to of configs) {
          if ('failure' in new MessageSigner(to).open('c', new MessageSigner(from).seal('c', '{}'))) count++;
        }
      }
      return count;
    };
    expect(refusals(lossless)).toBe(0);
    expect(refusals(twoStep)).toBeGreaterThan(0);
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

  it('maxClockSkew defaults to 30 s and refuses less than 100 ms', () => {
    expect(resolveBufferOptions().maxClockSkew).toBe(30_000);
    expect(resolveBufferOptions({ maxClockSkew: 2500 }).maxClockSkew).toBe(2500);
    expect(() => resolveBufferOptions({ maxClockSkew: 50 })).toThrow(/maxClockSkew.*at least 100/);
    expect(() => resolveBufferOptions({ maxClockSkew: -1 })).toThrow(InvalidOptionsError);
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
    const bus = new GuardedBus(inner, { maxPayloadBytes: 1000, signingKeys: signingKey === undefined ? [] : [signingKey], maxClockSkew: 30_000 }, (reason) => rejected.push(reason));
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

  it('with a key: drops a correctly signed message it already received, and one stamped outside maxClockSkew', async () => {
    const { inner, bus, rejected, received } = setup(KEY);
    await bus.publish('c', '{"v":1,"n":1}');
    await bus.publish('c', '{"v":1,"n":2}');
    const [[, first], [, second]] = inner.published as [[string, string], [string, string]];
    inner.emit('message', 'c', first);
    inner.emit('message', 'c', first);
    inner.emit('message', 'c', second);
    inner.emit('message', 'c', first);
    const old = new MessageSigner(KEY, () => Date.now() - 31_000).seal('c', '{"v":1,"n":3}');
    inner.emit('message', 'c', old);
    expect(received).toEqual(['{"v":1,"n":1}', '{"v":1,"n":2}']);
    expect(rejected).toEqual(['replayed', 'replayed', 'stale']);
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

describe('ReplayGuard', () => {
  const at = 1_764_000_000_000;
  const stamp = (src: string, seq: number, sealedAt = at) => ({ src, seq, at: sealedAt });

  it('per sender and channel: accepts rising sequence numbers, gaps included, and drops a repeat or an older one', () => {
    const guard = new ReplayGuard(30_000, () => at);
    expect(guard.admit('c', stamp('a', 0))).toBe('fresh');
    expect(guard.admit('c', stamp('a', 5))).toBe('fresh'); // 1-4 went to other channels
    expect(guard.admit('c', stamp('a', 5))).toBe('replayed');
    expect(guard.admit('c', stamp('a', 3))).toBe('replayed');
    expect(guard.admit('d', stamp('a', 3))).toBe('fresh'); // another channel has its own order
    expect(guard.admit('c', stamp('b', 0))).toBe('fresh'); // another sender too
  });

  it('a known sender and channel are judged by sequence alone: clock skew of any size after the first contact', () => {
    let now = at;
    const guard = new ReplayGuard(1000, () => now);
    expect(guard.admit('c', stamp('a', 0, at - 900))).toBe('fresh');
    // The sender's clock stands still while the receiver's runs on (60 s): still in order.
    for (let seq = 1; seq <= 24; seq++) {
      now += 2500;
      expect(guard.admit('c', stamp('a', seq, at - 900))).toBe('fresh');
    }
    expect(guard.admit('c', stamp('a', 24, at - 900))).toBe('replayed');
  });

  it('a first contact is taken only within maxClockSkew of the receiver clock, in either direction', () => {
    const guard = new ReplayGuard(2500, () => at);
    expect(guard.admit('c', stamp('fast', 0, at + 2500))).toBe('fresh');
    expect(guard.admit('c', stamp('slow', 0, at - 2500))).toBe('fresh');
    expect(guard.admit('c', stamp('ahead', 0, at + 2501))).toBe('stale');
    expect(guard.admit('c', stamp('behind', 0, at - 2501))).toBe('stale');
  });

  it('forgets a silent sender only once anything it sent before is stale', () => {
    let now = at;
    const guard = new ReplayGuard(1000, () => now);
    expect(guard.admit('c', stamp('a', 7, now))).toBe('fresh');
    now += 2 * 1000 + 1000; // exactly the retention: kept
    expect(guard.admit('c', stamp('b', 0, now))).toBe('fresh');
    expect(guard.size).toBe(2);
    expect(guard.admit('c', stamp('a', 7, at))).toBe('replayed');
    now += 2 * 1000 + 1001;
    expect(guard.admit('c', stamp('b', 1, now))).toBe('fresh');
    now += 2 * 1000 + 1001;
    expect(guard.admit('c', stamp('b', 2, now))).toBe('fresh');
    expect(guard.size).toBe(1); // 'a' forgotten; its old message is now stale, not fresh
    expect(guard.admit('c', stamp('a', 7, at + 1000))).toBe('stale');
  });
});
