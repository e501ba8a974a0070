import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BufferClient } from 'nestjs-redis-buffer';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import type { ResourceChange } from '../resources/resource.js';
import { RESOURCE_AUDIT, type AuditEntry, type AuditRecord } from './audit.js';

/**
 * The audit trail: every change is published as a durable entry, and the audit group writes it to
 * the trail (here a Redis hash and sorted set, standing in for the database an audit trail would
 * live in). A change made while every instance of the group is down is recorded when one returns.
 */
@Injectable()
export class AuditTrail implements OnApplicationShutdown {
  private readonly store: Redis;
  private readonly records: string;
  private readonly index: string;

  constructor(
    private readonly buffer: BufferClient,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {
    this.store = new Redis(config.redisUrl, { lazyConnect: true });
    this.records = `${config.namespace}:audit:records`;
    this.index = `${config.namespace}:audit:index`;
  }

  /** Publishes the change; resolves with the durable entry id once Redis has it. */
  publish(change: ResourceChange, version?: number): Promise<string> {
    const entry: AuditEntry = { ...change, ...(version === undefined ? {} : { version }), at: new Date().toISOString() };
    // One change, one record: publishing again (a retried request) adds nothing.
    const idempotencyKey = `${change.by}:${change.id}:${change.change}:${version ?? entry.at}`;
    return this.buffer.durable.publish(RESOURCE_AUDIT, entry, { key: change.id, idempotencyKey });
  }

  /** Writes one record, keyed by its entry id: running it twice (after a crash) writes it once. */
  async write(record: AuditRecord): Promise<void> {
    const written = await this.store.hsetnx(this.records, record.entryId, JSON.stringify(record));
    if (written === 1) await this.store.zadd(this.index, Date.parse(record.at), record.entryId);
  }

  /** The newest records first. */
  async latest(count = 50): Promise<AuditRecord[]> {
    const ids = await this.store.zrevrange(this.index, 0, count - 1);
    if (ids.length === 0) return [];
    const values = await this.store.hmget(this.records, ...ids);
    return values.filter((value): value is string => value !== null).map((value) => JSON.parse(value) as AuditRecord);
  }

  async onApplicationShutdown(): Promise<void> {
    this.store.disconnect();
  }
}
