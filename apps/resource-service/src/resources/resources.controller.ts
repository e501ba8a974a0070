import { Body, Controller, Delete, Get, HttpCode, HttpStatus, HttpException, Inject, NotFoundException, Param, Post, Sse, UseFilters, type MessageEvent } from '@nestjs/common';
import { BufferClient, BufferError } from 'nestjs-redis-buffer';
import { lastValueFrom, Observable } from 'rxjs';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import { AuditTrail } from '../audit/audit-trail.service.js';
import { BufferErrorFilter } from '../web/buffer-error.filter.js';
import { RemoteCache } from './remote-cache.service.js';
import { RESOURCE_CHANGED, type Resource, type ResourceChange } from './resource.js';
import { ResourceIdPipe } from './resource-id.pipe.js';
import { ResourceLookup, type Lookup } from './resource-lookup.service.js';
import { ResourceStore } from './resource-store.service.js';

/** `GET /resources/:id`: the resource, where this instance found it, and the gather that found it. */
export interface FoundResource {
  readonly resource: Resource;
  readonly source: 'local' | 'cache' | 'remote';
  readonly servedBy: string;
  readonly lookup?: Omit<Lookup, 'holder'>;
}

/** `POST` / `DELETE`: what changed, and how many instances received the invalidation. */
export interface ResourceChangeResult {
  readonly change: ResourceChange;
  readonly resource?: Resource;
  /** Redis's count of instances the `resource.changed` event was delivered to, this one included. */
  readonly invalidated: number;
  /** The durable entry that puts the change in the audit trail (`GET /audit`). */
  readonly auditEntryId: string;
}

@Controller('resources')
@UseFilters(BufferErrorFilter)
export class ResourcesController {
  constructor(
    private readonly lookup: ResourceLookup,
    private readonly store: ResourceStore,
    private readonly cache: RemoteCache,
    private readonly buffer: BufferClient,
    private readonly audit: AuditTrail,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  /**
   * The resource from this instance, its cache, or the first instance that holds it. `404` as soon
   * as every instance has said it does not; `504` when that could not be known in time.
   */
  @Get(':id')
  async find(@Param('id', ResourceIdPipe) id: string): Promise<FoundResource> {
    const outcome = await this.lookup.find(id);
    if (!('lookup' in outcome)) {
      return { resource: outcome.resource, source: outcome.source, servedBy: this.config.instanceName };
    }
    const { holder: _holder, ...lookup } = outcome.lookup;
    if (outcome.source === 'remote') return { resource: outcome.resource, source: 'remote', servedBy: this.config.instanceName, lookup };
    if (lookup.completedBy === 'all' && lookup.replies.every((reply) => reply.error === undefined)) {
      throw new NotFoundException({ statusCode: HttpStatus.NOT_FOUND, message: `No instance holds resource "${id}".`, ...lookup });
    }
    throw new HttpException(
      { statusCode: HttpStatus.GATEWAY_TIMEOUT, message: `Could not tell whether any instance holds "${id}" (completed by ${lookup.completedBy}).`, ...lookup },
      HttpStatus.GATEWAY_TIMEOUT,
    );
  }

  /** The whole gather: every instance's answer, how many were expected, how it ended, how long it took. */
  @Get(':id/replies')
  replies(@Param('id', ResourceIdPipe) id: string): Promise<Omit<Lookup, 'holder'>> {
    return this.lookup.gather(id).then(({ holder: _holder, ...lookup }) => lookup);
  }

  /**
   * Server-Sent Events: a `reply` event for each instance's answer as it arrives, then one `done`
   * event with `completedBy` and `expected` (or one `failed` event), then the stream ends.
   */
  @Sse(':id/stream')
  stream(@Param('id', ResourceIdPipe) id: string): Observable<MessageEvent> {
    return new Observable<MessageEvent>((subscriber) => {
      this.lookup
        .gather(id, (reply) => subscriber.next({ type: 'reply', data: reply }))
        .then(
          ({ holder: _holder, replies, ...lookup }) => subscriber.next({ type: 'done', data: { ...lookup, replies: replies.length, holders: replies.filter((reply) => reply.holds).map((reply) => reply.instance) } }),
          (error: unknown) =>
            subscriber.next({
              type: 'failed',
              data: { code: error instanceof BufferError ? error.code : 'INTERNAL', message: (error as Error)?.message ?? String(error) },
            }),
        )
        .finally(() => subscriber.complete());
    });
  }

  /** Creates or replaces the resource on this instance (the JSON body is its value) and tells every instance. */
  @Post(':id')
  async put(@Param('id', ResourceIdPipe) id: string, @Body() body: unknown): Promise<ResourceChangeResult> {
    const resource = this.store.put(id, body ?? {});
    const change: ResourceChange = { id, change: 'put', by: this.config.instanceName };
    // The audit entry first: once Redis has it, the change is in the trail even if this instance dies now.
    const auditEntryId = await this.audit.publish(change, resource.version);
    return { change, resource, invalidated: await this.broadcast(change), auditEntryId };
  }

  /** Deletes the resource from this instance and tells every instance; `404` if this instance does not hold it. */
  @Delete(':id')
  @HttpCode(HttpStatus.OK)
  async remove(@Param('id', ResourceIdPipe) id: string): Promise<ResourceChangeResult> {
    if (!this.store.delete(id)) throw new NotFoundException(`Instance "${this.config.instanceName}" does not hold resource "${id}".`);
    const change: ResourceChange = { id, change: 'delete', by: this.config.instanceName };
    const auditEntryId = await this.audit.publish(change);
    return { change, invalidated: await this.broadcast(change), auditEntryId };
  }

  private broadcast(change: ResourceChange): Promise<number> {
    this.cache.drop(change.id);
    return lastValueFrom(this.buffer.emit<number>(RESOURCE_CHANGED, change));
  }
}
