/**
 * This transport's identity in Nest's microservice layer. A handler registered with it runs only on
 * `RedisBufferTransport`, and a `RedisBufferTransport` runs only handlers registered with it or with
 * no transport at all.
 *
 * A registered symbol (`Symbol.for`): the CommonJS and the ES module build of this package, both
 * loaded in one process, share it, so a handler decorated through one copy runs on a transport
 * created from the other.
 */
export const BUFFER_TRANSPORT: unique symbol = Symbol.for('nestjs-redis-buffer');
