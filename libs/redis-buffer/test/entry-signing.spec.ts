import { createHmac } from 'node:crypto';
import { entrySize, oversizedFields } from '../src/core/durable/durable-entry.js';
import { admitEntry } from '../src/core/durable/entry-admission.js';
import { EntrySigner, entrySigningBody, handledMarkers, publishedMarkers } from '../src/core/durable/entry-signing.js';
import { DurableKeys } from '../src/core/durable/durable-keys.js';

const OLD = 'an-old-shared-key-of-enough-bytes';
const NEW = 'a-new-shared-key-of-enough-bytes!';
const STREAM = 'rb:durable:{job}';
const FIELDS = ['v', '1', 'pattern', 'job', 'data', '{"n":"é"}', 'idem', 'job-1', 'from', 'cli', 'at', '1795436887159'];

describe('signed stream entries', () => {
  it('signs exactly the documented body: HMAC-SHA256(key, stream + "\\n" + name=bytes:value lines)', () => {
    const signed = new EntrySigner([NEW]).sign(STREAM, FIELDS);
    const body = 'v=1:1\npattern=3:job\ndata=10:{"n":"é"}\nidem=5:job-1\nfrom=3:cli\nat=13:1795436887159\n';
    const record = Object.fromEntries([...Array(FIELDS.length / 2).keys()].map((i) => [FIELDS[2 * i], FIELDS[2 * i + 1]]));
    expect(entrySigningBody(record)).toBe(body);
    expect(signed.slice(0, FIELDS.length)).toEqual(FIELDS);
    expect(signed.slice(FIELDS.length)).toEqual(['sig', createHmac('sha256', NEW).update(`${STREAM}\n${body}`).digest('hex')]);
  });

  it('admits a signed entry with any key of the list, and a replay\'s added group; refuses unsigned, altered, wrong-stream and unknown-key entries', () => {
    const rotating = new EntrySigner([NEW, OLD]);
    const byOld = new EntrySigner([OLD]).sign(STREAM, FIELDS);
    expect(typeof admitEntry(STREAM, byOld, 1 << 20, rotating).entry).toBe('object');
    expect(admitEntry(STREAM, [...rotating.sign(STREAM, FIELDS), 'group', 'g'], 1 << 20, rotating).refusal).toBeUndefined();
    expect(admitEntry(STREAM, FIELDS, 1 << 20, rotating).refusal).toBe('unsigned');
    const altered = byOld.map((field) => (field === 'job-1' ? 'job-2' : field));
    expect(admitEntry(STREAM, altered, 1 << 20, rotating).refusal).toBe('forged');
    expect(admitEntry('rb:durable:{other}', byOld, 1 << 20, rotating).refusal).toBe('forged');
    expect(admitEntry(STREAM, byOld, 1 << 20, new EntrySigner([NEW])).refusal).toBe('forged');
    // A repeated field: the first value is the one signed and the one read.
    expect(admitEntry(STREAM, [...byOld, 'data', '{"n":"x"}'], 1 << 20, rotating).refusal).toBeUndefined();
    expect(admitEntry(STREAM, ['data', '{"n":"x"}', ...byOld], 1 << 20, rotating).refusal).toBe('forged');
  });

  it('refuses an entry over maxPayloadBytes before reading it, keeping only its small fields', () => {
    const big = ['v', '1', 'pattern', 'job', 'data', JSON.stringify('x'.repeat(5000)), 'headers', '{}', 'key', 'k'.repeat(2000), 'idem', 'i'];
    const size = entrySize(big);
    expect(size).toBe(big.join('').length);
    const admitted = admitEntry(STREAM, big, size - 1, new EntrySigner([NEW]));
    expect(admitted.refusal).toBe('oversized');
    expect(admitted.fields).toEqual(['v', '1', 'pattern', 'job', 'idem', 'i', 'oversized', String(size)]);
    expect(admitted.fields).toEqual(oversizedFields(big, size));
    // At the limit it is read (and then refused for its over-long key, not for its size).
    expect(admitEntry(STREAM, big, size, undefined)).toMatchObject({ refusal: 'malformed', entry: '"key" must be 1 to 256 characters' });
    // Its dead letter, replayed, cannot run: its data are gone.
    expect(admitEntry(STREAM, admitted.fields, size, undefined)).toMatchObject({ refusal: 'malformed', entry: expect.stringContaining('cannot run again') });
  });

  it('names idempotency markers after a MAC of the key when signing, one per key, the signing key first', () => {
    const keys = new DurableKeys('rb', 'job');
    expect(publishedMarkers(keys, 'job-1', undefined)).toEqual(['rb:durable:{job}:published:job-1']);
    expect(handledMarkers(keys, 'g', 'job-1', undefined)).toEqual(['rb:durable:{job}:handled:g:job-1']);
    const tag = (key: string): string => createHmac('sha256', key).update(`${STREAM}\nidempotency-key\njob-1`).digest('hex');
    const signer = new EntrySigner([NEW, OLD]);
    expect(publishedMarkers(keys, 'job-1', signer)).toEqual([`rb:durable:{job}:published-mac:${tag(NEW)}`, `rb:durable:{job}:published-mac:${tag(OLD)}`]);
    expect(handledMarkers(keys, 'g', 'job-1', signer)).toEqual([`rb:durable:{job}:handled-mac:g:${tag(NEW)}`, `rb:durable:{job}:handled-mac:g:${tag(OLD)}`]);
  });
});

describe('script calls', () => {
  it('pass present optional keys only, counted, and never an empty key name', async () => {
    const { keysThenArgs } = await import('../src/core/durable/durable-scripts.js');
    expect(keysThenArgs(['s'], [undefined, 'm1', 'm2'], [1, 'a'])).toEqual([3, 's', 'm1', 'm2', 1, 'a']);
    expect(keysThenArgs(['s'], [undefined], ['a'])).toEqual([1, 's', 'a']);
    expect(() => keysThenArgs(['s'], [''], [])).toThrow(TypeError);
  });
});
