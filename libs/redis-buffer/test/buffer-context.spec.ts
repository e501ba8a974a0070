import 'reflect-metadata';
import { BufferContext } from '../src/nest/buffer.context.js';

describe('BufferContext', () => {
  const context = new BufferContext({
    kind: 'request',
    requestId: 'r1',
    pattern: 'p',
    senderId: 'caller',
    instanceId: 'me',
    channel: 'rb:req:p',
    headers: JSON.parse('{"x-tenant":"t1"}'),
    deadline: Date.now() + 1000,
  });

  it('reads a header the caller sent', () => {
    expect(context.getHeader('x-tenant')).toBe('t1');
  });

  it('finds no header in the prototype: "constructor" or "toString" are absent, not functions', () => {
    expect(context.getHeader('constructor')).toBeUndefined();
    expect(context.getHeader('toString')).toBeUndefined();
    expect(context.getHeader('missing')).toBeUndefined();
  });

  it('tells the time left before the deadline, and Infinity for an event', () => {
    expect(context.getRemainingMs()).toBeGreaterThan(0);
    expect(context.getRemainingMs()).toBeLessThanOrEqual(1000);
    const event = new BufferContext({ kind: 'event', requestId: 'e', pattern: 'p', senderId: 'c', instanceId: 'me', channel: 'c', headers: {}, deadline: undefined });
    expect(event.getRemainingMs()).toBe(Infinity);
    expect(event.isEvent()).toBe(true);
  });
});
