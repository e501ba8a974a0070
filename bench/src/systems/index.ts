import { TOPIC_ECHO_BINDING, type Endpoints, type SystemName } from '../common.js';
import type { CallerSystem, ResponderGroup } from './types.js';

export async function createCaller(system: SystemName, endpoints: Endpoints): Promise<CallerSystem> {
  const namespace = `${endpoints.namespace}-${system}`;
  switch (system) {
    case 'otel':
      // Its own processes: the SDK is registered globally, before the library is used.
      (await import('./otel.js')).installBenchOpenTelemetry();
      return new (await import('./lib.js')).LibCaller(await (await import('./lib.js')).loadLibrary(undefined), endpoints.redisUrl, namespace);
    case 'lib':
    case 'topic':
    case 'base': {
      const lib = await import('./lib.js');
      return new lib.LibCaller(await lib.loadLibrary(system === 'base' ? endpoints.baseline : undefined), endpoints.redisUrl, namespace);
    }
    case 'naive':
      return new (await import('./floor.js')).FloorCaller(endpoints.redisUrl, namespace, false);
    case 'coalesced':
    case 'floornest':
      return new (await import('./floor.js')).FloorCaller(endpoints.redisUrl, namespace, true);
    case 'nats':
      return new (await import('./nats.js')).NatsCaller(endpoints.natsUrl!, namespace);
    case 'nest':
      return new (await import('./nest-redis.js')).NestRedisCaller(endpoints.redisPort);
  }
}

export async function startResponders(system: SystemName, endpoints: Endpoints, ids: readonly string[]): Promise<ResponderGroup> {
  const namespace = `${endpoints.namespace}-${system}`;
  switch (system) {
    case 'otel':
      (await import('./otel.js')).installBenchOpenTelemetry();
      return (await import('./lib.js')).startLibResponders(await (await import('./lib.js')).loadLibrary(undefined), endpoints.redisUrl, namespace, ids);
    case 'topic': {
      const lib = await import('./lib.js');
      return lib.startLibResponders(await lib.loadLibrary(undefined), endpoints.redisUrl, namespace, ids, TOPIC_ECHO_BINDING);
    }
    case 'lib':
    case 'base': {
      const lib = await import('./lib.js');
      return lib.startLibResponders(await lib.loadLibrary(system === 'base' ? endpoints.baseline : undefined), endpoints.redisUrl, namespace, ids);
    }
    case 'naive':
      return (await import('./floor.js')).startFloorResponders(endpoints.redisUrl, namespace, ids, false);
    case 'coalesced':
      return (await import('./floor.js')).startFloorResponders(endpoints.redisUrl, namespace, ids, true);
    case 'floornest':
      return (await import('./floor-nest.js')).startFloorNestResponders(endpoints.redisUrl, namespace, ids);
    case 'nats':
      return (await import('./nats.js')).startNatsResponders(endpoints.natsUrl!, namespace, ids);
    case 'nest':
      return (await import('./nest-redis.js')).startNestRedisResponders(endpoints.redisPort, ids);
  }
}
