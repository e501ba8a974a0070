import { MessageSigner } from '../wire/signing.js';
import { fieldsToRecord } from './durable-entry.js';
import type { DurableKeys } from './durable-keys.js';

/**
 * Signed stream entries (the `signingKey` option applied to durable messaging), documented in
 * docs/protocol.md ("Signed entries"). The same HMAC-SHA256 and key list as pub/sub signing
 * (`wire/signing.ts`): the first key signs, any key verifies.
 *
 *   sig  = hex(HMAC-SHA256(key, stream + "\n" + body))
 *   body = for each field of SIGNED_ENTRY_FIELDS the entry has (its first value), in that order:
 *          name + "=" + (UTF-8 byte length of value) + ":" + value + "\n"
 *
 * bound to the stream's key (namespace and pattern), so an entry is valid in its own stream only.
 * `group` is left out: a dead-letter replay sets it inside Redis, where the key is not; it only
 * narrows which group runs an entry the key's holder already signed.
 */
export const SIGNED_ENTRY_FIELDS = ['v', 'pattern', 'data', 'headers', 'key', 'idem', 'from', 'at'] as const;

/** Why an entry was refused before it could run. */
export type EntrySignatureFailure = 'unsigned' | 'forged';

/** The text an entry's signature covers (see the file comment). */
export function entrySigningBody(record: Readonly<Record<string, string>>): string {
  let body = '';
  for (const name of SIGNED_ENTRY_FIELDS) {
    const value = record[name];
    if (value !== undefined) body += `${name}=${Buffer.byteLength(value, 'utf8')}:${value}\n`;
  }
  return body;
}

/**
 * Signs and verifies entries, and names the idempotency markers of a signed deployment.
 *
 * Markers: unsigned, an idempotency key's markers are named after the key itself
 * (`published:<idem>`, `handled:<group>:<idem>`), so anyone who may write the namespace's keys and
 * guesses an idempotency key can write its marker first and make the genuine publish be skipped.
 * Signed, they are named after a MAC of the idempotency key instead (`published-mac:<tag>`,
 * `handled-mac:<group>:<tag>`, tag = hex(HMAC(key, stream + "\n" + "idempotency-key\n" + idem))): a
 * writer without the key cannot know the name before the genuine publish has used it.
 */
export class EntrySigner {
  private readonly signer: MessageSigner;

  constructor(keys: ReadonlyArray<string | Buffer>) {
    this.signer = new MessageSigner(keys);
  }

  /** The entry's fields with its `sig` field appended. */
  sign(stream: string, fields: readonly string[]): string[] {
    return [...fields, 'sig', this.signer.sign(stream, entrySigningBody(fieldsToRecord(fields)))];
  }

  /** Undefined when the entry carries a valid signature for `stream` made with any of the keys. */
  check(stream: string, record: Readonly<Record<string, string>>): EntrySignatureFailure | undefined {
    const sig = record.sig;
    if (sig === undefined) return 'unsigned';
    return this.signer.verify(stream, entrySigningBody(record), sig) ? undefined : 'forged';
  }

  /** The idempotency key's marker tags under each key, the signing key's first. */
  markerTags(stream: string, idempotencyKey: string): string[] {
    return this.signer.signatures(stream, `idempotency-key\n${idempotencyKey}`);
  }
}

/** The publish-side markers of an idempotency key: the one to write first, then those of the other (rotation) keys to check. */
export function publishedMarkers(keys: DurableKeys, idempotencyKey: string, signer: EntrySigner | undefined): string[] {
  return signer === undefined ? [keys.published(idempotencyKey)] : signer.markerTags(keys.stream, idempotencyKey).map((tag) => keys.signedPublished(tag));
}

/** A group's handled markers of an idempotency key: the one this consumer writes first, then those of the other (rotation) keys to check. */
export function handledMarkers(keys: DurableKeys, group: string, idempotencyKey: string, signer: EntrySigner | undefined): string[] {
  return signer === undefined ? [keys.handled(group, idempotencyKey)] : signer.markerTags(keys.stream, idempotencyKey).map((tag) => keys.signedHandled(group, tag));
}
