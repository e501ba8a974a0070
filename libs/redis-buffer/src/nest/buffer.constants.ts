/**
 * This transport's identity in Nest's microservice layer. A handler registered with it runs only on
 * `RedisBufferTransport`, and a `RedisBufferTransport` runs only handlers registered with it or with
 * no transport at all.
 */
export const BUFFER_TRANSPORT: unique symbol = Symbol('nestjs-redis-buffer');
