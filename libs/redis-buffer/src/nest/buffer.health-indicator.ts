import { Injectable } from '@nestjs/common';
import type { InstanceInfo } from '../core/membership/membership.js';
import type { BusClients, BusStatus } from '../core/bus/redis-bus.js';
import { probeRoundTrip, type RoundTripResult } from '../core/bus/round-trip-probe.js';
import { BufferChannels } from '../core/wire/channels.js';
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
    /**
     * Whether Redis answered a round trip on every connection (the client's, and the transport's)
     * within the probe timeout: false while Redis is hung, paused or unreachable, although no
     * socket closed.
     */
    redisAnswering: boolean;
    /** The slowest PING answer, in ms. */
    roundTripMs: number;
    /** The connections whose PING was not answered in time. */
    unanswered?: string[];
    /** The live instances the caller knows of, with the patterns each answers. */
    instances: Array<Pick<InstanceInfo, 'instanceId' | 'patterns'>>;
  }
>;

/** How long a health check waits for Redis to answer its PINGs before it says `down`. */
export const HEALTH_PROBE_TIMEOUT_MS = 1000;

/**
 * A health indicator for `@nestjs/terminus` (no dependency on it: it returns the result shape
 * terminus reads, with `status: 'down'` rather than a thrown error). Down as soon as Redis is
 * unreachable, a subscription is not confirmed, or Redis does not answer a PING on every connection
 * the library uses within `HEALTH_PROBE_TIMEOUT_MS` (a hung or paused server keeps every socket
 * open, so connection states alone would stay `up`); up again at the first check after Redis
 * answers.
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

  private probeTimeoutMs = HEALTH_PROBE_TIMEOUT_MS;

  constructor(private readonly client: BufferClient) {}

  /** How long a check waits for Redis's PING answers (default `HEALTH_PROBE_TIMEOUT_MS`). */
  withProbeTimeout(ms: number): this {
    this.probeTimeoutMs = ms;
    return this;
  }

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
    const channel = new BufferChannels(this.client.options.namespace).probe();
    const [clientProbe, transportProbe] = await Promise.all([
      probe(() => this.client.unwrap<BusClients>(), this.probeTimeoutMs, channel),
      this.transport === undefined ? undefined : probe(() => this.transport!.unwrap<BusClients>(), this.probeTimeoutMs, channel),
    ]);
    const unanswered = [...clientProbe.unanswered.map((name) => `client ${name}`), ...(transportProbe?.unanswered ?? []).map((name) => `transport ${name}`)];
    const redisAnswering = clientProbe.ok && (transportProbe === undefined || transportProbe.ok);
    return {
      [key]: {
        status: subscriptionsConfirmed && redisAnswering ? 'up' : 'down',
        client,
        ...(transport === undefined ? {} : { transport }),
        subscriptionsConfirmed,
        redisAnswering,
        roundTripMs: Math.max(clientProbe.latencyMs, transportProbe?.latencyMs ?? 0),
        ...(unanswered.length === 0 ? {} : { unanswered }),
        instances: this.client.knownInstances().map(({ instanceId, patterns }) => ({ instanceId, patterns: [...patterns] })),
      },
    } as unknown as BufferHealthResult<Key>;
  }
}

/** A round trip on a bus's connections; a bus not connected yet answers nothing. */
async function probe(clients: () => BusClients, timeoutMs: number, channel: string): Promise<RoundTripResult> {
  let connections: BusClients;
  try {
    connections = clients();
  } catch {
    return { ok: false, latencyMs: timeoutMs, unanswered: ['not connected'] };
  }
  return probeRoundTrip(connections, timeoutMs, channel);
}
