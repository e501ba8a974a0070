// The coalesced floor's exact wire work, with each request answered by a real Nest microservice
// handler: the library's own controller (`@BufferedPattern` methods with `@Payload()`), called
// through the proxy Nest builds around it (guards, pipes, interceptors, filters). The floor's
// caller drives it. The library against this system is the transport's own overhead, with Nest's
// share of a handler run on both sides.
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { BaseRpcContext, Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { isObservable } from 'rxjs';
import { loadLibrary, benchModule } from './lib.js';
import { FloorResponder, type WireRequest } from './floor.js';
import type { ResponderGroup } from './types.js';

/** A floor responder whose answer is whatever the Nest handler for the request's pattern returns. */
class HandlerFloorResponder extends FloorResponder {
  constructor(
    url: string,
    namespace: string,
    instanceId: string,
    private readonly handlers: ReadonlyMap<string, MessageHandler>,
  ) {
    super(url, namespace, instanceId, true);
  }

  protected override onRequest(request: WireRequest): void {
    const handler = this.handlers.get(request.p);
    if (handler === undefined) return;
    // A context per call, as every Nest transport makes one (the library's is a BufferContext).
    handler(request.data, new BaseRpcContext([request.p])).then(
      (result: unknown) => {
        if (!isObservable(result)) return this.reply(request, result);
        result.subscribe({ next: (value) => this.reply(request, value), error: () => this.reply(request, null) });
      },
      () => this.reply(request, null),
    );
  }
}

/** A Nest transport strategy that registers the library's handlers (same transport id) and answers on the floor's wire. */
class FloorNestServer extends Server implements CustomTransportStrategy {
  private responder: HandlerFloorResponder | undefined;

  constructor(
    private readonly url: string,
    private readonly namespace: string,
    private readonly instanceId: string,
    transportId: symbol,
  ) {
    super();
    // `@BufferedPattern` handlers are registered only on servers of the library's transport id.
    this.transportId = transportId;
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      this.responder = new HandlerFloorResponder(this.url, this.namespace, this.instanceId, this.messageHandlers);
      await this.responder.start();
      callback();
    } catch (error) {
      callback(error);
    }
  }

  async close(): Promise<void> {
    await this.responder?.close();
  }

  on(): void {}

  unwrap<T>(): T {
    throw new Error('not supported');
  }
}

/** One Nest app per process with one floor transport per responding instance, as the library's responders are run. */
export async function startFloorNestResponders(url: string, namespace: string, ids: readonly string[]): Promise<ResponderGroup> {
  const library = await loadLibrary(undefined);
  const app = await NestFactory.create(benchModule(library), { logger: ['error', 'warn'] });
  for (const instanceId of ids) {
    app.connectMicroservice({ strategy: new FloorNestServer(url, namespace, instanceId, library.BUFFER_TRANSPORT) }, { inheritAppConfig: true });
  }
  await app.startAllMicroservices();
  await app.init();
  return { close: () => app.close() };
}
