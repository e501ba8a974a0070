import 'reflect-metadata';
import { transformPatternToRoute } from '@nestjs/microservices/utils/transform-pattern.utils.js';
import { BufferChannels, channelPattern, channelPatternOfRoute, compareCodePoints } from '../src/core/wire/channels.js';

describe('BufferChannels', () => {
  const channels = new BufferChannels('app');

  it('puts every channel under the namespace, one kind per prefix', () => {
    expect(channels.request('resource.find')).toBe('app:req:resource.find');
    expect(channels.event('cache.invalidate')).toBe('app:evt:cache.invalidate');
    expect(channels.direct('node-1')).toBe('app:direct:node-1');
    expect(channels.inbox('node-1.x')).toBe('app:inbox:node-1.x');
  });

  it('keeps two namespaces apart for the same pattern', () => {
    expect(new BufferChannels('a').request('p')).not.toBe(new BufferChannels('b').request('p'));
  });
});

describe('channelPattern', () => {
  it('keeps strings, and encodes objects as compact JSON with keys in code-point order, recursively', () => {
    expect(channelPattern('resource.find')).toBe('resource.find');
    expect(channelPattern(7)).toBe('7');
    expect(channelPattern({ cmd: 'sum', Zone: 'eu' })).toBe('{"Zone":"eu","cmd":"sum"}');
    expect(channelPattern({ b: { y: 1, x: [2, { d: 1, c: 'q"' }] }, a: true })).toBe('{"a":true,"b":{"x":[2,{"c":"q\\"","d":1}],"y":1}}');
  });

  it('orders by code point, not UTF-16 unit: an astral character sorts after U+FFFD', () => {
    expect(['\u{1F600}', '\uFFFD', 'a'].sort(compareCodePoints)).toEqual(['a', '\uFFFD', '\u{1F600}']);
  });

  it("maps Nest's locale-sorted route of an object pattern to the same channel form", () => {
    expect(channelPatternOfRoute('{"cmd":"sum","Zone":"eu"}')).toBe('{"Zone":"eu","cmd":"sum"}');
    expect(channelPatternOfRoute('plain')).toBe('plain');
  });

  it('tells inboxes of its namespace from other channels', () => {
    const channels = new BufferChannels('app');
    expect(channels.isInbox('app:inbox:x.1')).toBe(true);
    expect(channels.isInbox('app:inbox:')).toBe(false);
    expect(channels.isInbox('other:inbox:x')).toBe(false);
    expect(channels.isInbox('app:req:x')).toBe(false);
  });
});

describe('channelPatternOfRoute', () => {
  it('maps the route Nest stores for a handler to the channel form callers send, control characters included', () => {
    const patterns: Array<Parameters<typeof transformPatternToRoute>[0]> = [
      { cmd: 'a\tb' },
      { cmd: 'line\nbreak', Zone: 'eu' },
      { cmd: '\u0001start', nested: { q: 'say "hi"\\', n: 1.5 } },
      { n: -0, big: 1e21, small: 5e-7 },
      'plain.string',
    ];
    for (const pattern of patterns) expect(channelPatternOfRoute(transformPatternToRoute(pattern))).toBe(channelPattern(pattern));
  });
});
