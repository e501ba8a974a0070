/**
 * Every Redis key of durable messaging comes from here. All keys of one pattern share the hash tag
 * `{pattern}`, so they live in one Redis Cluster slot and the scripts that touch several of them
 * stay valid there.
 *
 * | key                                          | type   | holds                                           |
 * | -------------------------------------------- | ------ | ----------------------------------------------- |
 * | `<ns>:durable:{<pattern>}`                   | stream | the entries; one consumer group per group name  |
 * | `<ns>:durable:{<pattern>}:dead:<group>`      | stream | the group's dead letters                        |
 * | `<ns>:durable:{<pattern>}:published:<idem>`  | string | id of the entry published with that idempotency key |
 * | `<ns>:durable:{<pattern>}:handled:<group>:<idem>` | string | `done`, or the lease of the run in progress |
 * | `<ns>:durable:{<pattern>}:published-mac:<tag>` | string | with `signingKey`: `published:` named after a MAC of the idempotency key (see entry-signing.ts) |
 * | `<ns>:durable:{<pattern>}:handled-mac:<group>:<tag>` | string | with `signingKey`: `handled:` named the same way |
 * | `<ns>:durable:{<pattern>}:order:<group>`      | sorted set | the group's unacknowledged entries that have a key, by key then id (see scripts/order-member.lua.ts) |
 * | `<ns>:durable:{<pattern>}:attempts:<group>`  | hash   | entry id → handler runs started, for unacknowledged entries |
 * | `<ns>:durable:{<pattern>}:permission-probe`  | string | never written: the start-up permission check sends its string commands for it (see durable-permissions.ts) |
 * | `<ns>:durable:{<pattern>}:settings`          | hash   | the shared durable options the last consumer started with (see durable-settings.ts) |
 *
 * and one pub/sub channel, `<ns>:durable:{<pattern>}:turn:<group>`: a key whose next entry may start now.
 *
 * A wildcard pattern (`order.*`, see wire/topic.ts) has the same keys as an exact one: its stream
 * holds the entries of every topic that matched it since it was bound. Beside them, one registry per
 * namespace (`bindingKeys`), in a slot of its own.
 */
export class DurableKeys {
  private readonly base: string;

  constructor(
    readonly namespace: string,
    readonly pattern: string,
  ) {
    this.base = `${namespace}:durable:{${pattern}}`;
  }

  get stream(): string {
    return this.base;
  }

  deadLetters(group: string): string {
    return `${this.base}:dead:${group}`;
  }

  published(idempotencyKey: string): string {
    return `${this.base}:published:${idempotencyKey}`;
  }

  handled(group: string, idempotencyKey: string): string {
    return `${this.base}:handled:${group}:${idempotencyKey}`;
  }

  /** With `signingKey`: the published marker of the idempotency key whose MAC is `tag` (see entry-signing.ts). */
  signedPublished(tag: string): string {
    return `${this.base}:published-mac:${tag}`;
  }

  /** With `signingKey`: the group's handled marker of the idempotency key whose MAC is `tag`. */
  signedHandled(group: string, tag: string): string {
    return `${this.base}:handled-mac:${group}:${tag}`;
  }

  /** Pub/sub channel on which acknowledgements announce that an entry's key has a next entry waiting. */
  turnChannel(group: string): string {
    return `${this.base}:turn:${group}`;
  }

  /** The shared durable options recorded by the consumers (see durable-settings.ts). */
  get settings(): string {
    return `${this.base}:settings`;
  }

  /** Never written: the key the start-up permission check tries its string commands on. */
  get permissionProbe(): string {
    return `${this.base}:permission-probe`;
  }

  attempts(group: string): string {
    return `${this.base}:attempts:${group}`;
  }

  /** The group's order index: one sorted set for all its keys, so scripts never build a key name. */
  order(group: string): string {
    return `${this.base}:order:${group}`;
  }
}

/**
 * The namespace's registry of wildcard bindings, which publishers read to route a topic's entries
 * (see topic-bindings.ts). Both keys share the hash tag `{<ns>}` (one Redis Cluster slot) and start
 * with `<ns>:durable:` (covered by the same ACL key pattern as the streams); no pattern's key can
 * take these names, since those have `{` right after `durable:`.
 *
 * | key                                   | type   | holds                                               |
 * | ------------------------------------- | ------ | --------------------------------------------------- |
 * | `<ns>:durable:bindings:{<ns>}`         | set    | every wildcard pattern bound by a consumer group    |
 * | `<ns>:durable:bindings:{<ns>}:version` | string | integer, incremented whenever the set changes       |
 */
export function bindingKeys(namespace: string): { readonly bindings: string; readonly version: string } {
  const bindings = `${namespace}:durable:bindings:{${namespace}}`;
  return { bindings, version: `${bindings}:version` };
}
