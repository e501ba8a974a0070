import { Inject, Injectable } from '@nestjs/common';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import type { Resource } from './resource.js';

/** The resources this instance owns. Nothing here is shared: other instances learn of them only by asking. */
@Injectable()
export class ResourceStore {
  private readonly resources = new Map<string, Resource>();

  constructor(@Inject(SERVICE_CONFIG) private readonly config: ServiceConfig) {
    for (const id of config.resources) this.put(id, { description: `resource ${id}, owned by ${config.instanceName} since start-up` });
  }

  get(id: string): Resource | undefined {
    return this.resources.get(id);
  }

  /** Creates or replaces a resource; its version grows by one on every call. */
  put(id: string, value: unknown): Resource {
    const previous = this.resources.get(id);
    const resource: Resource = {
      id,
      owner: this.config.instanceName,
      value,
      version: (previous?.version ?? 0) + 1,
      updatedAt: new Date().toISOString(),
    };
    this.resources.set(id, resource);
    return resource;
  }

  /** Returns whether it was held. */
  delete(id: string): boolean {
    return this.resources.delete(id);
  }

  /** The ids held, sorted. */
  ids(): string[] {
    return [...this.resources.keys()].sort();
  }
}
