/**
 * Every Redis channel name this library uses comes from here, under one namespace prefix.
 * Channels are plain (SUBSCRIBE), never patterns: Redis matches each PUBLISH against every
 * subscribed pattern, so patterns would slow down every publisher on the server.
 */
export class BufferChannels {
  constructor(readonly namespace: string) {}

  /** Requests for one pattern: every instance with a handler for it subscribes. */
  request(pattern: string): string {
    return `${this.namespace}:req:${pattern}`;
  }

  /** Events for one pattern: every instance with an event handler for it subscribes. */
  event(pattern: string): string {
    return `${this.namespace}:evt:${pattern}`;
  }

  /** Requests addressed to one instance (the `to` option), whatever their pattern. */
  direct(instanceId: string): string {
    return `${this.namespace}:direct:${instanceId}`;
  }

  /** A client's inbox: one subscription carries the replies of all its requests, routed by request id. */
  inbox(clientId: string): string {
    return `${this.namespace}:inbox:${clientId}`;
  }
}
