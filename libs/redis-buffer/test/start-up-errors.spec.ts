import { RedisPermissionError, aclCommandRule } from '../src/core/errors/redis-permission.error.js';
import { RedisTlsError } from '../src/core/errors/redis-tls.error.js';
import { namespaceOfChannel } from '../src/core/bus/permission-check.js';
import { tlsFailure } from '../src/core/bus/tls-failure.js';
import { BoundedLog, REDIS_ERROR_LOG_BOUND } from '../src/core/logger.js';

const commandRefused = new Error("NOPERM this user has no permissions to run the 'pubsub|numsub' command");
const channelRefused = new Error('NOPERM this user has no permissions to access one of the channels used as arguments');

describe('RedisPermissionError', () => {
  it('names the refused command and the ACL rule that allows it', () => {
    const error = new RedisPermissionError('PUBSUB NUMSUB', ['orders:probe'], { cause: commandRefused, namespace: 'orders' });
    expect(error.code).toBe('BUFFER_REDIS_PERMISSION');
    expect(error.aclRule).toBe('+pubsub|numsub');
    expect(error.channelRefused).toBe(false);
    expect(error.message).toContain('Redis refused PUBSUB NUMSUB on "orders:probe"');
    expect(error.message).toContain('ACL SETUSER <user> +pubsub|numsub');
    expect(error.cause).toBe(commandRefused);
  });

  it("for a refused channel, gives the namespace's channel rule", () => {
    const error = new RedisPermissionError('PUBLISH', ['orders:probe'], { cause: channelRefused, namespace: 'orders' });
    expect(error.channelRefused).toBe(true);
    expect(error.aclRule).toBe('&orders:*');
    expect(new RedisPermissionError('SUBSCRIBE', ['x'], { cause: channelRefused }).aclRule).toBe('&<namespace>:*');
  });

  it('maps commands with subcommands to the ACL form', () => {
    expect(aclCommandRule('PING')).toBe('+ping');
    expect(aclCommandRule('PUBSUB SHARDNUMSUB')).toBe('+pubsub|shardnumsub');
    expect(aclCommandRule('CLUSTER SLOTS')).toBe('+cluster|slots');
  });
});

describe('namespaceOfChannel', () => {
  it.each([
    ['orders:req:find', 'orders'],
    ['orders:inbox:abc', 'orders'],
    ['a:b:probe', 'a:b'],
    ['orders:direct:i-1:req:x', 'orders'],
    ['no-kind-here', undefined],
  ])('%s -> %s', (channel, namespace) => {
    expect(namespaceOfChannel(channel)).toBe(namespace);
  });
});

describe('tlsFailure', () => {
  const withCode = (code: string, message = code): Error => Object.assign(new Error(message), { code });

  it.each(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'])(
    '%s is a TLS failure, with its code and Node message',
    (code) => {
      const error = tlsFailure(withCode(code, 'what Node said'), 'rediss://redis.internal:6380');
      expect(error).toBeInstanceOf(RedisTlsError);
      expect(error!.code).toBe('BUFFER_REDIS_TLS');
      expect(error!.tlsCode).toBe(code);
      expect(error!.message).toContain('TLS with rediss://redis.internal:6380 failed: what Node said');
    },
  );

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND'])('%s is not', (code) => {
    expect(tlsFailure(withCode(code), 'x')).toBeUndefined();
  });

  it('an error without a code (a Redis error reply) is not', () => {
    expect(tlsFailure(new Error('WRONGPASS invalid username-password pair'), 'x')).toBeUndefined();
  });
});

describe('Redis error log bound', () => {
  it('logs 3 Redis errors per 30 s, then how many were suppressed', () => {
    let now = 0;
    const lines: string[] = [];
    const log = new BoundedLog({ log: () => undefined, warn: (m) => lines.push(m), error: () => undefined }, REDIS_ERROR_LOG_BOUND.burst, REDIS_ERROR_LOG_BOUND.windowMs, () => now);
    for (let i = 0; i < 10; i++) log.warn(`e${i}`);
    now = 29_999;
    log.warn('late');
    now = 30_000;
    log.warn('next window');
    expect(lines).toEqual(['e0', 'e1', 'e2', '8 similar messages suppressed in the last 30000 ms', 'next window']);
  });
});
