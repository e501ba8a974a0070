import type { Cluster, Redis } from 'ioredis';

/**
 * What the Redis server behind a durable connection can do beyond Redis 7.0, which every path of
 * durable messaging is written and tested for. Newer commands are used only where they do the same
 * job in fewer steps, and the 7.0 path stays the fallback:
 *
 * | feature                   | since | used for                                                           |
 * | ------------------------- | ----- | ------------------------------------------------------------------ |
 * | `XTRIM … ACKED`           | 8.2   | trimming: the server itself keeps entries a group still needs      |
 * | `XADD IDMP`               | 8.6   | detected, not used (see `docs/reliability.md`, "Redis 8")          |
 * | `XNACK`                   | 8.8   | detected, not used (see `docs/reliability.md`, "Redis 8")          |
 *
 * Valkey reports `redis_version:7.2.4` and has none of them.
 */
export interface StreamFeatures {
  /** `redis_version` from `INFO server`; `undefined` when INFO is not allowed (an ACL without it) or failed. */
  readonly version: string | undefined;
  readonly trimAcked: boolean;
  readonly idempotentAdd: boolean;
  readonly nack: boolean;
}

export const REDIS_7_FEATURES: StreamFeatures = { version: undefined, trimAcked: false, idempotentAdd: false, nack: false };

/** The features of a server from its `INFO server` text. */
export function streamFeaturesOf(info: string): StreamFeatures {
  const version = /^redis_version:([^\r\n]+)/m.exec(info)?.[1]?.trim();
  if (version === undefined || /^server_name:valkey/m.test(info)) return { ...REDIS_7_FEATURES, version };
  const [major = 0, minor = 0] = version.split('.').map((part) => Number.parseInt(part, 10) || 0);
  const atLeast = (wantMajor: number, wantMinor: number): boolean => major > wantMajor || (major === wantMajor && minor >= wantMinor);
  return { version, trimAcked: atLeast(8, 2), idempotentAdd: atLeast(8, 6), nack: atLeast(8, 8) };
}

const detected = new WeakMap<object, Promise<StreamFeatures>>();

/**
 * The features of the server a connection talks to, asked once per connection (`INFO server`; on a
 * cluster, the node ioredis picks). Never rejects: a server that does not answer INFO is used as
 * Redis 7.0. A node of another version (a cluster being upgraded, a failover to an older replica) is
 * caught where a feature is used: the command fails and that use falls back to the 7.0 path.
 */
export function streamFeatures(connection: Redis | Cluster): Promise<StreamFeatures> {
  let features = detected.get(connection);
  if (features === undefined) {
    features = connection.info('server').then(streamFeaturesOf, () => REDIS_7_FEATURES);
    detected.set(connection, features);
  }
  return features;
}

/** Remembers that `connection`'s server turned out not to have a feature after all. */
export function withoutFeature(connection: Redis | Cluster, feature: keyof Omit<StreamFeatures, 'version'>): void {
  const features = detected.get(connection);
  if (features !== undefined) detected.set(connection, features.then((known) => ({ ...known, [feature]: false })));
}

/** Sets what a connection's server is taken to support, instead of asking it (tests of the fallback paths). */
export function assumeStreamFeatures(connection: Redis | Cluster, features: StreamFeatures): void {
  detected.set(connection, Promise.resolve(features));
}
