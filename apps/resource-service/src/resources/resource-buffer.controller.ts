import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { BufferContext, BufferedEvent, BufferedPattern } from 'nestjs-redis-buffer';
import { LiveService } from '../live/live.service.js';
import { StatsService } from '../stats/stats.service.js';
import { RemoteCache } from './remote-cache.service.js';
import { DELETE_RESOURCE, FIND_RESOURCE, INSTANCE_STATS, RESOURCE_CHANGED, RESOURCE_EVENTS, type DeleteReply, type DeleteRequest, type FindReply, type InstanceStats, type ResourceChange } from './resource.js';
import { ResourceChanges } from './resource-changes.service.js';
import { ResourceStore } from './resource-store.service.js';

/** What this instance answers on the buffer; every instance runs these for every request. */
@Controller()
export class ResourceBufferController {
  constructor(
    private readonly store: ResourceStore,
    private readonly changes: ResourceChanges,
    private readonly cache: RemoteCache,
    private readonly stats: StatsService,
    private readonly live: LiveService,
  ) {}

  /** "Do you hold this resource?": only the local store counts, never the cache, or copies would answer for owners. */
  @BufferedPattern(FIND_RESOURCE)
  find(@Payload() id: unknown): FindReply {
    this.stats.countLookupAnswered();
    return { resource: typeof id === 'string' ? (this.store.get(id) ?? null) : null };
  }

  /** "Delete this resource you own": sent to the owner only (`to`), by the instance a DELETE landed on. */
  @BufferedPattern(DELETE_RESOURCE)
  async delete(@Payload() request: DeleteRequest): Promise<DeleteReply> {
    if (typeof request?.id !== 'string') return { deleted: false, invalidated: 0 };
    const deleted = await this.changes.delete(request.id, typeof request.via === 'string' ? request.via : 'unknown');
    return deleted === undefined ? { deleted: false, invalidated: 0 } : { deleted: true, ...deleted };
  }

  @BufferedPattern(INSTANCE_STATS)
  instanceStats(): InstanceStats {
    return this.stats.local();
  }

  /** A resource changed on some instance: whatever copy this one cached is stale, and its open pages should show it. */
  @BufferedEvent(RESOURCE_CHANGED)
  resourceChanged(@Payload() change: ResourceChange, @Ctx() context: BufferContext): void {
    if (typeof change?.id !== 'string') return;
    this.cache.drop(change.id);
    this.stats.countInvalidation(`${change.change} ${change.id} by ${change.by} (sent by ${context.getSenderId()})`);
    this.live.resourceChanged(change);
  }

  /**
   * Every `resource.…` event, whatever its topic (a wildcard binding): this instance's activity
   * feed. For `resource.changed` it runs beside `resourceChanged`, each once: the event reaches this
   * instance on two channels, and runs each matching handler on the first.
   */
  @BufferedEvent(RESOURCE_EVENTS)
  resourceActivity(@Payload() change: ResourceChange, @Ctx() context: BufferContext): void {
    if (typeof change?.id !== 'string') return;
    this.stats.recordActivity(`${context.getPattern()}: ${change.change} ${change.id} by ${change.by}`);
  }
}
