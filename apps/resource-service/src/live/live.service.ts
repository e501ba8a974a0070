import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { BufferClient } from 'nestjs-redis-buffer';
import { firstValueFrom, Subject, timeout, type Observable } from 'rxjs';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import type { ResourceChange } from '../resources/resource.js';
import { HEARTBEAT_MS, INSTANCE_HEARTBEAT, INSTANCE_LEFT, type InstanceHeartbeat, type InstanceLeft, type LiveEvent } from './live-events.js';
import { PresenceService } from './presence.service.js';

/**
 * The live feed of the pages this instance serves: every change anywhere (a resource put or
 * deleted on any instance, an instance arriving, going silent or leaving) arrives here as a buffer
 * event, as on every other instance, and goes out to this instance's open pages over SSE. Redis is
 * the backplane: no instance needs to know which pages the others serve.
 */
@Injectable()
export class LiveService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(LiveService.name);
  private readonly events = new Subject<LiveEvent>();
  private readonly startedAt = new Date().toISOString();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly stopWatchingPresence: () => void;

  constructor(
    private readonly buffer: BufferClient,
    private readonly presence: PresenceService,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {
    this.stopWatchingPresence = presence.onChange((instance) => this.events.next({ type: 'presence', data: instance }));
  }

  /** Every event from now on; completes when this instance shuts down. */
  get feed(): Observable<LiveEvent> {
    return this.events.asObservable();
  }

  /** What a page needs first: who serves it and every instance known here. */
  hello(): LiveEvent {
    return { type: 'hello', data: { self: this.config.instanceName, instances: this.presence.list(), demoControls: this.config.demoControlUrl !== undefined } };
  }

  resourceChanged(change: ResourceChange): void {
    this.events.next({ type: 'resource', data: change });
  }

  onApplicationBootstrap(): void {
    const beat: InstanceHeartbeat = { instance: this.config.instanceName, url: this.config.publicUrl, startedAt: this.startedAt };
    const send = (): void => {
      // A lost heartbeat is what the others measure; it needs no handling here.
      this.buffer.emit(INSTANCE_HEARTBEAT, beat).subscribe({ error: () => undefined });
    };
    send();
    this.heartbeat = setInterval(send, HEARTBEAT_MS);
  }

  /** Says goodbye on the buffer (so every page shows this instance gone at once) and ends this instance's SSE streams, which would otherwise hold the HTTP server open. */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.heartbeat);
    this.stopWatchingPresence();
    const farewell: InstanceLeft = { instance: this.config.instanceName, reason: 'stopped' };
    await firstValueFrom(this.buffer.emit(INSTANCE_LEFT, farewell).pipe(timeout(1000))).catch((error: unknown) =>
      this.logger.warn(`Could not announce leaving: ${(error as Error)?.message ?? String(error)}`),
    );
    this.events.complete();
  }
}
