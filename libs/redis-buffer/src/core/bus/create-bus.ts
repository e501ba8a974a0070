import { ClusterBus } from './cluster-bus.js';
import { ConnectionFactory, type RedisTarget } from './connection-factory.js';
import { IoredisBus, type RedisBus } from './redis-bus.js';

/**
 * The bus the options ask for: `ClusterBus` (sharded pub/sub) for `cluster`, else `IoredisBus` on
 * one server, or on the master a set of sentinels names. `connectionName` shows in `CLIENT LIST`.
 */
export function createBus(options: RedisTarget, connectionName: string): RedisBus {
  const connections = new ConnectionFactory(options);
  return connections.isCluster ? new ClusterBus({ connections, connectionName }) : new IoredisBus({ connections, connectionName });
}
