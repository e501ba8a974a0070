import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { BufferContext, BufferedEvent, BufferedPattern } from 'nestjs-redis-buffer';
import { StatsService } from '../stats/stats.service.js';
import { RemoteCache } from './remote-cache.service.js';
import { FIND_RESOURCE, INSTANCE_STATS, RESOURCE_CHANGED, type FindReply, type InstanceStats, type ResourceChange } from './resource.js';
import { ResourceStore } from './resource-store.service.js';

/** What this instance answers on the buffer; every instance runs these for every request. */
@Controller()
export class ResourceBufferController {
  constructor(
    private readonly store: ResourceStore,
    private readonly cache: RemoteCache,
    private readonly stats: StatsService,
  ) {}

  /** "Do you hold this resource?": only the local store counts, never the cache, or copies would answer for owners. */
  @BufferedPattern(FIND_RESOURCE)
  find(@Payload() id: unknown): FindReply {
    this.stats.countLookupAnswered();
    return { resource: typeof id === 'string' ? (this.store.get(id) ?? null) : null };
  }

  @BufferedPattern(INSTANCE_STATS)
  instanceStats(): InstanceStats {
    return this.stats.local();
  }

  /** A resource changed on some instance: whatever copy this one cached is stale. */
  @BufferedEvent(RESOURCE_CHANGED)
  resourceChanged(@Payload() change: ResourceChange, @Ctx() context: BufferContext): void {
    if (typeof change?.id !== 'string') return;
    this.cache.drop(change.id);
    this.stats.countInvalidation(`${change.change} ${change.id} by ${change.by} (sent by ${context.getSenderId()})`);
  }
}
