import { Inject, Injectable } from '@nestjs/common';
import { BufferClient } from 'nestjs-redis-buffer';
import { lastValueFrom } from 'rxjs';
import { AuditTrail } from '../audit/audit-trail.service.js';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import { RemoteCache } from './remote-cache.service.js';
import { RESOURCE_CHANGED, type Resource, type ResourceChange } from './resource.js';
import { ResourceStore } from './resource-store.service.js';

/**
 * Changes to the resources this instance owns: each is recorded in the audit trail (a durable
 * entry) and announced to every instance (`resource.changed`).
 */
@Injectable()
export class ResourceChanges {
  constructor(
    private readonly store: ResourceStore,
    private readonly cache: RemoteCache,
    private readonly buffer: BufferClient,
    private readonly audit: AuditTrail,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  /** Creates or replaces a resource held here; resolves with it and Redis's count of instances told. */
  async put(id: string, value: unknown, via: string): Promise<{ change: ResourceChange; resource: Resource; invalidated: number; auditEntryId: string }> {
    const resource = this.store.put(id, value);
    const change: ResourceChange = { id, change: 'put', by: this.config.instanceName, via, version: resource.version };
    // The audit entry first: once Redis has it, the change is in the trail even if this instance dies now.
    const auditEntryId = await this.audit.publish(change, resource.version);
    return { change, resource, invalidated: await this.announce(change), auditEntryId };
  }

  /** Deletes a resource held here; `undefined` if this instance does not hold it. */
  async delete(id: string, via: string): Promise<{ change: ResourceChange; invalidated: number; auditEntryId: string } | undefined> {
    if (!this.store.delete(id)) return undefined;
    const change: ResourceChange = { id, change: 'delete', by: this.config.instanceName, via };
    const auditEntryId = await this.audit.publish(change);
    return { change, invalidated: await this.announce(change), auditEntryId };
  }

  private announce(change: ResourceChange): Promise<number> {
    this.cache.drop(change.id);
    return lastValueFrom(this.buffer.emit<number>(RESOURCE_CHANGED, change));
  }
}
