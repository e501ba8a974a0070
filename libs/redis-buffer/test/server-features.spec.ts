import { REDIS_7_FEATURES, streamFeaturesOf } from '../src/core/durable/server-features.js';

const info = (lines: string[]): string => ['# Server', ...lines, 'redis_mode:standalone', ''].join('\r\n');

describe('streamFeaturesOf', () => {
  it.each([
    ['7.0.15', false, false, false],
    ['7.4.2', false, false, false],
    ['8.0.3', false, false, false],
    ['8.2.0', true, false, false],
    ['8.4.1', true, false, false],
    ['8.6.0', true, true, false],
    ['8.8.0', true, true, true],
    ['9.0.0', true, true, true],
  ])('Redis %s: trimAcked %s, idempotentAdd %s, nack %s', (version, trimAcked, idempotentAdd, nack) => {
    expect(streamFeaturesOf(info([`redis_version:${version}`]))).toEqual({ version, trimAcked, idempotentAdd, nack });
  });

  it('takes Valkey, which reports redis_version 7.2.4, for what it is: none of them', () => {
    expect(streamFeaturesOf(info(['redis_version:7.2.4', 'server_name:valkey', 'valkey_version:9.0.0']))).toEqual({ ...REDIS_7_FEATURES, version: '7.2.4' });
  });

  it('uses the 7.0 path when the version cannot be read', () => {
    expect(streamFeaturesOf('')).toEqual(REDIS_7_FEATURES);
    expect(streamFeaturesOf(info(['redis_version:unknown']))).toMatchObject({ trimAcked: false, idempotentAdd: false, nack: false });
  });
});
