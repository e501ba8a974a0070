import type { ResourceChange } from '../resources/resource.js';

/** Durable pattern: a resource changed; the audit group records it, once, even if it is down now. */
export const RESOURCE_AUDIT = 'resource.audit';
/** The consumer group that keeps the audit trail. */
export const AUDIT_GROUP = 'audit';

/** What the instance that made a change publishes. */
export interface AuditEntry extends ResourceChange {
  /** The resource's version after a `put`. */
  readonly version?: number;
  /** When the change happened, on the instance that made it. */
  readonly at: string;
}

/** One line of the audit trail, as `GET /audit` returns it. */
export interface AuditRecord extends AuditEntry {
  /** The durable entry's id: the record's identity, the same whichever instance wrote it. */
  readonly entryId: string;
  /** The instance that wrote the record (any instance of the audit group). */
  readonly recordedBy: string;
  readonly attempt: number;
}
