import { Inject, Injectable } from '@nestjs/common';
import { BufferClient, type CompletedBy } from 'nestjs-redis-buffer';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import { RemoteCache } from '../resources/remote-cache.service.js';
import { INSTANCE_STATS, type InstanceStats } from '../resources/resource.js';
import { ResourceStore } from '../resources/resource-store.service.js';

/** `GET /stats`: every instance's figures and their sums. */
export interface ClusterStats {
  readonly askedBy: string;
  readonly expected: number | undefined;
  readonly completedBy: CompletedBy;
  /** How many instances received the request and did not answer in time: their figures are missing. */
  readonly unanswered: number;
  readonly elapsedMs: number;
  /** One entry per instance that answered, by name. */
  readonly instances: readonly InstanceStats[];
  readonly totals: {
    readonly instances: number;
    readonly resourcesHeld: number;
    readonly requestsServed: number;
    readonly lookupsAnswered: number;
  };
}

/** This instance's counters, and the cluster-wide view gathered from every instance. */
@Injectable()
export class StatsService {
  private readonly startedAt = new Date().toISOString();
  private requestsServed = 0;
  private lookupsAnswered = 0;
  private lastInvalidation: string | null = null;
  private readonly recentActivity: string[] = [];

  constructor(
    private readonly buffer: BufferClient,
    private readonly store: ResourceStore,
    private readonly cache: RemoteCache,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  countRequestServed(): void {
    this.requestsServed++;
  }

  countLookupAnswered(): void {
    this.lookupsAnswered++;
  }

  countInvalidation(description: string): void {
    this.lastInvalidation = description;
  }

  /** One event seen by the `resource.>` binding; the latest five are kept. */
  recordActivity(description: string): void {
    this.recentActivity.unshift(description);
    this.recentActivity.length = Math.min(this.recentActivity.length, 5);
  }

  /** This instance's figures right now. */
  local(): InstanceStats {
    const resources = this.store.ids();
    return {
      instance: this.config.instanceName,
      url: this.config.publicUrl,
      resources,
      resourcesHeld: resources.length,
      requestsServed: this.requestsServed,
      lookupsAnswered: this.lookupsAnswered,
      cached: this.cache.ids(),
      startedAt: this.startedAt,
      lastInvalidation: this.lastInvalidation,
      recentActivity: [...this.recentActivity],
    };
  }

  /** Asks every instance for its figures; the totals are sums of exactly the figures listed. */
  async cluster(): Promise<ClusterStats> {
    const result = await this.buffer.gather<InstanceStats>(INSTANCE_STATS, null);
    const instances = result.replies.map((reply) => reply.data).sort((left, right) => left.instance.localeCompare(right.instance));
    const sum = (pick: (stats: InstanceStats) => number): number => instances.reduce((total, stats) => total + pick(stats), 0);
    return {
      askedBy: this.config.instanceName,
      expected: result.expected,
      completedBy: result.completedBy,
      unanswered: Math.max(0, (result.expected ?? 0) - result.finished),
      elapsedMs: Math.round(result.elapsedMs * 100) / 100,
      instances,
      totals: {
        instances: instances.length,
        resourcesHeld: sum((stats) => stats.resourcesHeld),
        requestsServed: sum((stats) => stats.requestsServed),
        lookupsAnswered: sum((stats) => stats.lookupsAnswered),
      },
    };
  }
}
