import { BufferChannels } from '../src/core/channels.js';

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
