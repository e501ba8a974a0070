/** A resource as one instance holds it. */
export interface Resource {
  readonly id: string;
  /** The instance holding it. */
  readonly owner: string;
  /** Whatever was last POSTed for it (at start-up: a small description). */
  readonly value: unknown;
  /** Starts at 1, grows with every POST. */
  readonly version: number;
  readonly updatedAt: string;
}

/** Buffer pattern: "do you hold this resource?"; every instance answers `FindReply`. */
export const FIND_RESOURCE = 'resource.find';
/** Buffer pattern: "what are your figures?"; every instance answers `InstanceStats`. */
export const INSTANCE_STATS = 'instance.stats';
/** Buffer pattern, sent to the owner only (`to`): "delete this resource"; the owner answers `DeleteReply`. */
export const DELETE_RESOURCE = 'resource.delete';
/** Buffer event: a resource changed somewhere; every instance drops its cached copy and tells its open pages. */
export const RESOURCE_CHANGED = 'resource.changed';
/**
 * Buffer event binding, a topic wildcard: every `resource.…` event, at any depth (`resource.changed`
 * today, whatever comes next). Each instance keeps its latest ones as its activity feed; it runs
 * beside the `resource.changed` handler for the same event, each once.
 */
export const RESOURCE_EVENTS = 'resource.>';

/** One instance's answer to `resource.find`: the resource, or `null` when it does not hold it. */
export interface FindReply {
  readonly resource: Resource | null;
}

/** The payload of `resource.delete`: which resource, and the instance whose HTTP request asked. */
export interface DeleteRequest {
  readonly id: string;
  readonly via: string;
}

/** The owner's answer to `resource.delete`. */
export interface DeleteReply {
  /** Whether it held the resource (and so deleted it). */
  readonly deleted: boolean;
  /** Redis's count of instances the `resource.changed` event reached, when it was deleted. */
  readonly invalidated: number;
  readonly change?: ResourceChange;
  /** The durable entry that put the deletion in the audit trail, when it was deleted. */
  readonly auditEntryId?: string;
}

/** The payload of the `resource.changed` event. */
export interface ResourceChange {
  readonly id: string;
  readonly change: 'put' | 'delete';
  /** The instance where the change happened: the resource's owner. */
  readonly by: string;
  /** The instance whose HTTP request asked for it (the owner itself, or another that forwarded a DELETE). */
  readonly via: string;
  /** The version after a `put`. */
  readonly version?: number;
}

/** One instance's figures, as `GET /stats` aggregates them. */
export interface InstanceStats {
  readonly instance: string;
  readonly url: string;
  /** The ids it holds, sorted. */
  readonly resources: readonly string[];
  readonly resourcesHeld: number;
  /** HTTP requests it has served. */
  readonly requestsServed: number;
  /** `resource.find` requests it has answered for any instance, itself included. */
  readonly lookupsAnswered: number;
  /** Ids it has cached from other instances' answers. */
  readonly cached: readonly string[];
  /** The last `resource.changed` event it received, in words. */
  readonly lastInvalidation: string | null;
  /** The latest events its `resource.>` handler saw, newest first: `topic: change id by instance`. */
  readonly recentActivity: readonly string[];
  readonly startedAt: string;
}
