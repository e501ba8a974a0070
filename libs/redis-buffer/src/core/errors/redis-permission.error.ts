import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * Redis refused a command for lack of permission (`NOPERM`: the ACL user may not run that command,
 * or not on that channel or key). Start-up probes every command the configuration needs before
 * subscribing anything (durable messaging: before reading), so a misconfigured instance or caller
 * fails here at once instead of running half-working. Retrying does not help: the user's ACL (or the
 * `namespace`) must change. `channels` names the channels, or for durable messaging the keys, refused.
 */
export class RedisPermissionError extends BufferError {
  readonly code = BufferErrorCode.RedisPermission;
  /**
   * The ACL rule to add to the Redis user: the command (`+publish`, `+pubsub|numsub`, …), for a
   * refused channel the namespace's channels (`&orders:*`), for a refused key its durable keys
   * (`~orders:durable:*`).
   */
  readonly aclRule: string;
  /** Whether Redis refused a channel (not the command itself). */
  readonly channelRefused: boolean;

  constructor(
    /** The command Redis refused, as sent: `PUBLISH`, `PUBSUB NUMSUB`, `SSUBSCRIBE`, … */
    readonly command: string,
    /** The channels it was sent with (empty for `PING`). */
    readonly channels: readonly string[],
    /** `fix`: what to grant, when it is not the pub/sub rule (durable messaging's commands and keys). */
    options?: { cause?: unknown; namespace?: string; fix?: string },
  ) {
    const reason = (options?.cause as Error | undefined)?.message ?? 'no permission';
    const channelRefused = /channel/i.test(reason);
    const keyRefused = !channelRefused && /\bkey\b/i.test(reason);
    const namespace = options?.namespace ?? '<namespace>';
    const aclRule = channelRefused ? `&${namespace}:*` : keyRefused ? `~${namespace}:durable:*` : aclCommandRule(command);
    const on = channels.length === 0 ? '' : ` on ${channels.map((c) => `"${c}"`).join(', ')}`;
    const what = channelRefused ? `the namespace's channels` : `the command`;
    super(
      options?.fix !== undefined
        ? `Redis refused ${command}${on} (${reason}): ${options.fix}`
        : `Redis refused ${command}${on} (${reason}): grant the Redis user ${what} with ACL SETUSER <user> ${aclRule} (the least-privilege rules for instances and callers are in the "Deploying securely" section of the README), or use the namespace the user was granted.`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.aclRule = aclRule;
    this.channelRefused = channelRefused;
  }
}

/** The ACL rule that allows `command` (`PUBSUB NUMSUB` → `+pubsub|numsub`). */
export function aclCommandRule(command: string): string {
  return `+${command.toLowerCase().split(' ').join('|')}`;
}
