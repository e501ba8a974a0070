import { Body, Controller, Delete, Get, HttpCode, HttpException, HttpStatus, Inject, Param, Post, Sse, UseFilters, type MessageEvent } from '@nestjs/common';
import { BufferClient, BufferError } from 'nestjs-redis-buffer';
import { Observable } from 'rxjs';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import { AuditTrail } from '../audit/audit-trail.service.js';
import { BufferErrorFilter } from '../web/buffer-error.filter.js';
import { DELETE_RESOURCE, type DeleteReply, type DeleteRequest, type Resource, type ResourceChange } from './resource.js';
import { ResourceChanges } from './resource-changes.service.js';
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
  /** Redis's count of instances the `resource.changed` event was delivered to, the owner included. */
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
    private readonly changes: ResourceChanges,
    private readonly buffer: BufferClient,
    private readonly audit: AuditTrail,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  /**
   * The resource from this instance, its cache, or the first instance that holds it. `404` as soon
   * as every instance that received the request has said it does not; `504` naming the instances
   * that did not answer when that could not be known; `502` when an instance's handler failed.
   */
  @Get(':id')
  async find(@Param('id', ResourceIdPipe) id: string): Promise<FoundResource> {
    const outcome = await this.lookup.find(id);
    if (!('lookup' in outcome)) return { resource: outcome.resource, source: outcome.source, servedBy: this.config.instanceName };
    const { holder: _holder, ...lookup } = outcome.lookup;
    if (outcome.source === 'remote') return { resource: outcome.resource, source: 'remote', servedBy: this.config.instanceName, lookup };
    throw notFoundOrWhy(id, lookup);
  }

  /** The whole gather: every instance's answer, how many were expected, who did not answer, how it ended, how long it took. */
  @Get(':id/replies')
  replies(@Param('id', ResourceIdPipe) id: string): Promise<Omit<Lookup, 'holder'>> {
    return this.lookup.gather(id).then(({ holder: _holder, ...lookup }) => lookup);
  }

  /**
   * Server-Sent Events: one `asking` event (the instances this one expects to answer), a `reply`
   * event for each answer as it arrives, then one `done` event with the outcome and who did not
   * answer (or one `failed` event), then the stream ends.
   */
  @Sse(':id/stream')
  stream(@Param('id', ResourceIdPipe) id: string): Observable<MessageEvent> {
    return new Observable<MessageEvent>((subscriber) => {
      this.lookup
        .reachable()
        .then((waitingFor) => {
          subscriber.next({ type: 'asking', data: { askedBy: this.config.instanceName, waitingFor } });
          return this.lookup.gather(id, (reply) => subscriber.next({ type: 'reply', data: reply }));
        })
        .then(
          ({ holder: _holder, replies, ...lookup }) =>
            subscriber.next({ type: 'done', data: { ...lookup, replies: replies.length, holders: replies.filter((reply) => reply.holds).map((reply) => reply.instance) } }),
          (error: unknown) =>
            subscriber.next({
              type: 'failed',
              data: { code: error instanceof BufferError ? error.code : 'INTERNAL', message: (error as Error)?.message ?? String(error) },
            }),
        )
        .finally(() => subscriber.complete());
    });
  }

  /**
   * Creates the resource on this instance, or replaces it if this instance holds it (the JSON body
   * is its value), and tells every instance. `409` naming the owner if another instance holds it:
   * one resource, one owner. `504` if an instance that might hold it did not answer.
   */
  @Post(':id')
  async put(@Param('id', ResourceIdPipe) id: string, @Body() body: unknown): Promise<ResourceChangeResult> {
    if (this.store.get(id) === undefined) {
      const { holder, ...lookup } = await this.lookup.locate(id);
      if (holder !== undefined && holder.owner !== this.config.instanceName) {
        throw new HttpException(
          { statusCode: HttpStatus.CONFLICT, message: `Instance "${holder.owner}" already holds resource "${id}": change it there, or delete it first.`, owner: holder.owner, resource: holder },
          HttpStatus.CONFLICT,
        );
      }
      if (lookup.outcome === 'partial' || lookup.outcome === 'error') {
        throw new HttpException(
          { statusCode: HttpStatus.GATEWAY_TIMEOUT, message: `Cannot tell whether another instance holds "${id}": ${describeUnanswered(lookup)}. Not created.`, ...lookup },
          HttpStatus.GATEWAY_TIMEOUT,
        );
      }
    }
    return this.changes.put(id, body ?? {}, this.config.instanceName);
  }

  /**
   * Deletes the resource wherever it is: here, or on its owner, asked directly (`to`). Every
   * instance is told. `404` if no instance holds it, `504` if that could not be known.
   */
  @Delete(':id')
  @HttpCode(HttpStatus.OK)
  async remove(@Param('id', ResourceIdPipe) id: string): Promise<ResourceChangeResult> {
    const local = await this.changes.delete(id, this.config.instanceName);
    if (local !== undefined) return local;
    const { holder, ...lookup } = await this.lookup.locate(id);
    if (holder === undefined) throw notFoundOrWhy(id, lookup);
    const request: DeleteRequest = { id, via: this.config.instanceName };
    const result = await this.buffer.gather<DeleteReply>(DELETE_RESOURCE, request, { to: holder.owner });
    const reply = result.replies[0]?.data;
    if (reply === undefined) {
      const why = result.errors[0] !== undefined ? `it failed: ${JSON.stringify(result.errors[0].error)}` : `it did not answer (completed by ${result.completedBy})`;
      throw new HttpException({ statusCode: HttpStatus.GATEWAY_TIMEOUT, message: `Asked owner "${holder.owner}" to delete "${id}", but ${why}.`, owner: holder.owner }, HttpStatus.GATEWAY_TIMEOUT);
    }
    if (!reply.deleted || reply.change === undefined || reply.auditEntryId === undefined) {
      throw new HttpException({ statusCode: HttpStatus.CONFLICT, message: `Instance "${holder.owner}" no longer holds "${id}" (deleted meanwhile?).`, owner: holder.owner }, HttpStatus.CONFLICT);
    }
    return { change: reply.change, invalidated: reply.invalidated, auditEntryId: reply.auditEntryId };
  }
}

/** The instances that did not answer, in words: "three did not answer (silent)". */
function describeUnanswered(lookup: Omit<Lookup, 'holder'>): string {
  const failed = lookup.replies.filter((reply) => reply.error !== undefined).map((reply) => `${reply.instance} failed`);
  const silent = lookup.missing.map((name) => `${name} did not answer (${lookup.missingReasons[name] ?? 'timeout'})`);
  const unnamed = lookup.unanswered - lookup.missing.length;
  if (unnamed > 0) silent.push(`${unnamed} unknown instance${unnamed === 1 ? '' : 's'} did not answer`);
  return [...failed, ...silent].join(', ') || 'not every instance answered';
}

/** The HTTP error for a lookup that found nobody holding `id`: 404 only when that is certain. */
function notFoundOrWhy(id: string, lookup: Omit<Lookup, 'holder'>): HttpException {
  const answered = lookup.replies.length;
  if (lookup.outcome === 'none') {
    return new HttpException({ statusCode: HttpStatus.NOT_FOUND, message: `No instance holds resource "${id}": all ${answered} instances that received the request said no.`, ...lookup }, HttpStatus.NOT_FOUND);
  }
  if (lookup.redis === 'unanswered' && lookup.outcome === 'partial') {
    return new HttpException(
      { statusCode: HttpStatus.SERVICE_UNAVAILABLE, message: `Could not ask every instance whether it holds "${id}": Redis did not answer (completed by ${lookup.completedBy}). Try again shortly.`, ...lookup },
      HttpStatus.SERVICE_UNAVAILABLE,
    );
  }
  const status = lookup.outcome === 'error' ? HttpStatus.BAD_GATEWAY : HttpStatus.GATEWAY_TIMEOUT;
  return new HttpException(
    { statusCode: status, message: `Could not tell whether any instance holds "${id}": ${answered - lookup.replies.filter((reply) => reply.error !== undefined).length} said no, ${describeUnanswered(lookup)} (completed by ${lookup.completedBy}).`, ...lookup },
    status,
  );
}
