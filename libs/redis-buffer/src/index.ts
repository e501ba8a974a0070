// The public API of nestjs-redis-buffer. Anything not exported here is internal.

// Nest layer
export { BufferModule } from './nest/buffer.module.js';
export { BUFFER_MODULE_OPTIONS } from './nest/buffer.module-definition.js';
export { BufferClient } from './nest/buffer.client.js';
export { BufferHealthIndicator, HEALTH_PROBE_TIMEOUT_MS, type BufferHealthResult } from './nest/buffer.health-indicator.js';
export { probeRoundTrip, type RoundTripResult } from './core/bus/round-trip-probe.js';
export { RedisBufferTransport, type BufferServerStats } from './nest/redis-buffer.server.js';
export { BufferedPattern } from './nest/buffered-pattern.decorator.js';
export { BufferedEvent } from './nest/buffered-event.decorator.js';
export { BufferContext, type BufferMessageInfo } from './nest/buffer.context.js';
export { BUFFER_TRANSPORT } from './nest/buffer.constants.js';
export { DurablePattern } from './nest/durable-pattern.decorator.js';
export { DurableContext } from './nest/durable.context.js';

// Core: a plain Node process as an instance (Responder) or a caller (Caller), without Nest
export { Responder, type ResponderHandler, type ResponderSeams, type ResponderState, type RunAround } from './core/respond/responder.js';
export type { ResponderStats } from './core/respond/responder-stats.js';
export type { MessageContext } from './core/respond/message-context.js';
export { Caller, type CallerSeams } from './core/gather/caller.js';
export type { Clock, TimerHandle } from './core/clock.js';
export type { RedisBus, BusEvents, BusClients } from './core/bus/redis-bus.js';
export type { BufferLogger } from './core/logger.js';

// Core
export { BUFFER_DEFAULTS, resolveBufferOptions, type BufferOptions, type BufferCallOptions, type BufferGatherOptions, type ResolvedBufferOptions } from './core/options.js';
export type { BufferReply, GatherResult, CompletedBy, MissingReason, RedisAnswer } from './core/gather/reply.js';
export type { InstanceInfo } from './core/membership/membership.js';
export { TELEMETRY_SCOPE } from './core/telemetry/telemetry.js';
export { prometheusViews } from './core/telemetry/metric-names.js';
export { BufferChannels, channelPattern } from './core/wire/channels.js';
export { isWildcardPattern, MAX_TOPIC_TOKENS, topicMatches } from './core/wire/topic.js';
export {
  PROTOCOL_VERSION,
  type BufferHeaders,
  type Envelope,
  type RequestEnvelope,
  type ReplyEnvelope,
  type EventEnvelope,
  type PingEnvelope,
  type PongEnvelope,
  type HelloEnvelope,
  type ByeEnvelope,
  type WhoEnvelope,
} from './core/wire/envelope.js';
export { decodeMessage } from './core/wire/decode.js';
export type { BusStatus } from './core/bus/redis-bus.js';
export { MessageSigner, type SignatureStamp } from './core/wire/signing.js';
export type { RequesterStats } from './core/gather/requester.js';
export { DURABLE_DEFAULTS, resolveDurableOptions, resolveDurableHandlerOptions, type DurableOptions, type DurableHandlerOptions, type DurablePublishOptions, type DeadLetterPageOptions, type DeadLetterIterationOptions, type ResolvedDurableOptions } from './core/durable/durable-options.js';
export { DurablePublisher } from './core/durable/durable-publisher.js';
export { DurableConsumer, type DurableBacklog, type DurableConsumerStats, type DurableDelivery, type DurableRun, type DurableSubscription } from './core/durable/durable-consumer.js';
export { durableMetrics } from './core/durable/durable-metrics.js';
export type { DeadLetter } from './core/durable/dead-letter.js';
export { DURABLE_ENTRY_VERSION } from './core/durable/durable-entry.js';
export type { TrimResult } from './core/durable/retention.js';
export type { StreamFeatures } from './core/durable/server-features.js';
export { DurableKeys } from './core/durable/durable-keys.js';
export { durableAclRule, type DurableSide } from './core/durable/durable-permissions.js';
export {
  BufferError,
  BufferErrorCode,
  NoRespondersError,
  BufferTimeoutError,
  ConnectionLostError,
  PayloadTooLargeError,
  BadMessageError,
  InvalidOptionsError,
  TopicPatternError,
  TooManyRequestsError,
  RedisPermissionError,
  RedisTlsError,
  DuplicateInstanceError,
  CallbackError,
  InstancesMissingError,
  REFUSAL_CODES,
  DeadLetterNotFoundError,
  ReplicasUnconfirmedError,
} from './core/errors/index.js';
