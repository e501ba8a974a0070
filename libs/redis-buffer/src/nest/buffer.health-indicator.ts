import { Injectable } from '@nestjs/common';
import type { InstanceInfo } from '../core/membership/membership.js';
import type { BusStatus } from '../core/bus/redis-bus.js';
import { BufferClient } from './buffer.client.js';
import type { RedisBufferTransport } from './redis-buffer.server.js';

/** One indicator's result, in the shape `@nestjs/terminus` reads (`{ [key]: { status, ...details } }`). */
export type BufferHealthResult<Key extends string = string> = Record<
  Key,
  {
    status: 'up' | 'down';
    /** The caller's connection: `connected` means the inbox subscription is confirmed by Redis. */
    client: BusStatus;
    /** The instance's connection, when a transport is watched: `connected` means every subscription is confirmed. */
    transport?: BusStatus;
    /** Whether every subscription (inbox, and the transport's channels) is confirmed by Redis. */
    subscriptionsConfirmed: boolean;
    /** The live instances the caller knows of, with the patterns each answers. */
    instances: Array<Pick<InstanceInfo, 'instanceId' | 'patterns'>>;
  }
>;

/**
 * A health indicator for `@nestjs/terminus` (no dependency on it: it returns the result shape
 * terminus reads, with `status: 'down'` rather than a thrown error). Down as soon as Redis is
 * unreachable or a subscription is not confirmed; up again once both connections are back and the
 * subscriptions confirmed.
 *
 * @example
 * ```ts
 * @Get('health')
 * @HealthCheck()
 * check() {
 *   return this.health.check([() => this.buffer.isHealthy('buffer')]);
 * }
 * // main.ts, to include the instance's own connection:
 * app.get(BufferHealthIndicator).watch(transport);
 * ```
 */
@Injectable()
export class BufferHealthIndicator {
  private transport: RedisBufferTransport | undefined;

  constructor(private readonly client: BufferClient) {}

  /** Also report this instance's transport (its connection and subscriptions). */
  watch(transport: RedisBufferTransport): this {
    this.transport = transport;
    return this;
  }

  /** The indicator's result under `key`; connects the client first if it never did. */
  async isHealthy<Key extends string = 'redis-buffer'>(key: Key = 'redis-buffer' as Key): Promise<BufferHealthResult<Key>> {
    if (this.client.connectionStatus === 'disconnected') await this.client.connect().catch(() => undefined);
    const client = this.client.connectionStatus;
    const transport = this.transport?.connectionStatus;
    const subscriptionsConfirmed = client === 'connected' && (transport === undefined || transport === 'connected');
    return {
      [key]: {
        status: subscriptionsConfirmed ? 'up' : 'down',
        client,
        ...(transport === undefined ? {} : { transport }),
        subscriptionsConfirmed,
        instances: this.client.knownInstances().map(({ instanceId, patterns }) => ({ instanceId, patterns: [...patterns] })),
      },
    } as unknown as BufferHealthResult<Key>;
  }
}
