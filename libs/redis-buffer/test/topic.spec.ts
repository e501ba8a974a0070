import { TopicPatternError } from '../src/core/errors/topic-pattern.error.js';
import { isWildcardPattern, MAX_TOPIC_TOKENS, TopicPattern, topicMatches } from '../src/core/wire/topic.js';

describe('topic patterns', () => {
  const cases: Array<[string, string, boolean]> = [
    ['order.*', 'order.created', true],
    ['order.*', 'order', false],
    ['order.*', 'order.created.eu', false],
    ['order.*', 'order.', false],
    ['order.>', 'order.created', true],
    ['order.>', 'order.created.eu.1', true],
    ['order.>', 'order', false],
    ['order.>', 'order.', false],
    ['order.>', 'order..x', false],
    ['order.>', 'order.x.', false],
    ['>', 'a', true],
    ['>', 'a.b.c', true],
    ['>', '', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['*.*', 'a.b', true],
    ['product.*.updated', 'product.42.updated', true],
    ['product.*.updated', 'product.42.created', false],
    ['product.*.updated', 'product.updated', false],
    ['*.b.>', 'a.b.c', true],
    ['*.b.>', 'a.c.c', false],
    ['a*.*', 'a*.x', true],
    ['a*.*', 'ab.x', false],
    ['order.*', 'order.*', true],
    ['order.*', 'orders.x', false],
    ['x.*', 'x.éè', true],
  ];
  it.each(cases)('%j against %j is %s', (pattern, topic, expected) => {
    expect(new TopicPattern(pattern).matches(topic)).toBe(expected);
    expect(topicMatches(pattern, topic)).toBe(expected);
  });

  it('tells wildcard patterns from exact ones: only whole tokens * and > are wildcards', () => {
    expect(isWildcardPattern('order.*')).toBe(true);
    expect(isWildcardPattern('order.>')).toBe(true);
    expect(isWildcardPattern('*')).toBe(true);
    expect(isWildcardPattern('order.created')).toBe(false);
    expect(isWildcardPattern('a*b')).toBe(false);
    expect(isWildcardPattern('a>')).toBe(false);
    expect(isWildcardPattern({ cmd: '*' })).toBe(false);
    expect(topicMatches('order.created', 'order.created')).toBe(true);
    expect(topicMatches('a*b', 'axb')).toBe(false);
  });

  it('refuses malformed wildcard patterns with a typed error naming the problem', () => {
    expect(() => new TopicPattern('order.>.x')).toThrow(TopicPatternError);
    expect(() => new TopicPattern('order.>.x')).toThrow(/only as the last token/);
    expect(() => new TopicPattern('order..*')).toThrow(/empty token/);
    expect(() => new TopicPattern('.order.*')).toThrow(/empty token/);
    expect(() => new TopicPattern('order.*.')).toThrow(/empty token/);
    expect(() => new TopicPattern('order.created')).toThrow(/no "\*" or ">"/);
    expect(() => new TopicPattern(Array(MAX_TOPIC_TOKENS + 1).fill('*').join('.'))).toThrow(/more than 128 tokens/);
    expect(new TopicPattern(Array(MAX_TOPIC_TOKENS).fill('*').join('.')).matches(Array(MAX_TOPIC_TOKENS).fill('a').join('.'))).toBe(true);
  });
});
