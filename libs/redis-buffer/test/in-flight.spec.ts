import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { InFlightRequests } from '../src/core/gather/in-flight.js';
import { Slots } from '../src/core/slots.js';

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

interface Request {
  readonly requestId: string;
  readonly held?: unknown;
}

function request(requests: InFlightRequests<Request, string>, trace?: string): Request {
  const entry = { requestId: requests.nextId() };
  requests.add(entry, trace);
  return entry;
}

describe('InFlightRequests', () => {
  it('finds each request by its id, and an ended request by none, even once its slot is taken again', () => {
    const requests = new InFlightRequests<Request, string>('Ab_-9z');
    const first = request(requests);
    const second = request(requests);
    expect(requests.get(first.requestId)).toBe(first);
    expect(requests.get(second.requestId)).toBe(second);
    requests.delete(first.requestId);
    const third = request(requests);
    // The freed slot is reused, under a new id.
    expect(third.requestId.split('.')[0]).toBe(first.requestId.split('.')[0]);
    expect(third.requestId).not.toBe(first.requestId);
    expect(requests.get(first.requestId)).toBeUndefined();
    expect(requests.delete(first.requestId)).toBeUndefined();
    expect(requests.get(third.requestId)).toBe(third);
    expect(requests.size).toBe(2);
  });

  it('matches no id it did not give: another prefix, no slot, a bad digit, a slot out of range, too long a number', () => {
    const requests = new InFlightRequests<Request, string>('px');
    const only = request(requests);
    const [, sequence] = only.requestId.split('.');
    for (const id of ['', 'px', 'px.', 'px0', `qx0.${sequence}`, `px.${sequence}`, `pxZ.${sequence}`, `px5.${sequence}`, `px0000000.${sequence}`, `px-1.${sequence}`, 'px0.zz', `${only.requestId}x`]) {
      expect(requests.get(id)).toBeUndefined();
    }
    expect(requests.get(only.requestId)).toBe(only);
  });

  it('returns a request\'s span once, when it is dropped', () => {
    const requests = new InFlightRequests<Request, string>('p');
    const traced = request(requests, 'span-a');
    const plain = request(requests);
    expect(requests.delete(plain.requestId)).toBeUndefined();
    const reused = request(requests);
    // The slot `plain` left holds no span of it for the request now in it.
    expect(requests.delete(reused.requestId)).toBeUndefined();
    expect(requests.delete(traced.requestId)).toBe('span-a');
    expect(requests.delete(traced.requestId)).toBeUndefined();
  });

  it('refuses an id that is not the last one given, so no two requests share a slot', () => {
    const requests = new InFlightRequests<Request, string>('p');
    const stale = requests.nextId();
    const fresh = requests.nextId();
    requests.add({ requestId: fresh });
    expect(() => requests.add({ requestId: stale })).toThrow(/not the last nextId/);
    expect(() => requests.add({ requestId: 'elsewhere' })).toThrow(/not the last nextId/);
    expect(requests.size).toBe(1);
  });

  it('lists the requests in flight in a copy that survives ending them, and clears', () => {
    const requests = new InFlightRequests<Request, string>('p');
    const all = [request(requests), request(requests), request(requests)];
    requests.delete(all[1]!.requestId);
    const listed = requests.values();
    expect(listed).toEqual([all[0], all[2]]);
    for (const entry of listed) requests.delete(entry.requestId);
    expect(requests.size).toBe(0);
    request(requests);
    requests.clear();
    expect(requests.size).toBe(0);
    expect(requests.values()).toEqual([]);
  });

  it('keeps as many slots as requests were in flight at once, and starts small again after a burst', () => {
    const requests = new InFlightRequests<Request, string>('p');
    const slotOf = (entry: Request): number => parseInt(entry.requestId.slice(1).split('.')[0]!, 36);
    const open: Request[] = [];
    for (let index = 0; index < 8; index++) open.push(request(requests));
    for (let round = 0; round < 1000; round++) {
      requests.delete(open.shift()!.requestId);
      const entry = request(requests);
      expect(slotOf(entry)).toBeLessThan(8);
      open.push(entry);
    }
    for (let index = 0; index < 200; index++) open.push(request(requests));
    for (const entry of open.splice(0)) requests.delete(entry.requestId);
    expect(slotOf(request(requests))).toBe(0);
  });
});

describe('Slots', () => {
  it('reuses the slot freed last, and tells a free slot from a held one', () => {
    const slots = new Slots<string>();
    expect(slots.add('a')).toBe(0);
    expect(slots.add('b')).toBe(1);
    expect(slots.add('c')).toBe(2);
    expect(slots.delete(0)).toBe('a');
    expect(slots.delete(2)).toBe('c');
    expect(slots.delete(2)).toBeUndefined();
    expect(slots.nextSlot()).toBe(2);
    expect(slots.add('d')).toBe(2);
    expect(slots.add('e')).toBe(0);
    expect(slots.values()).toEqual(['e', 'b', 'd']);
    expect(slots.at(7)).toBeUndefined();
    expect(slots.size).toBe(3);
  });
});

/**
 * The fault this structure exists for: once the table behind the requests in flight is in V8's old
 * generation, the requests that pass through must not be dragged there too. Two full GCs while
 * requests are in flight put the table there (as the memory reducer does to an idle caller); then
 * 100,000 requests, each holding a small object graph, pass through with 64 in flight, and the
 * old generation's growth is summed. A Map in the same place drags nearly every request there (the
 * control: the measurement sees the fault); the slots must not. It runs in a child process of its
 * own, on this source compiled as it is: a fresh heap, which the test runner's own is not.
 */
describe('requests in flight and the old generation', () => {
  const measure = `
    import { getHeapSpaceStatistics } from 'node:v8';
    import { InFlightRequests } from './core/gather/in-flight.js';
    const oldGeneration = () => getHeapSpaceStatistics().find((space) => space.space_name === 'old_space').space_used_size;
    class MapRequests {
      map = new Map();
      sequence = 0;
      nextId() { return 'p' + (this.sequence++).toString(36); }
      add(entry) { this.map.set(entry.requestId, entry); }
      delete(id) { this.map.delete(id); }
    }
    async function promotedWhile(table, count) {
      const open = [];
      const next = () => {
        const entry = { requestId: table.nextId(), held: Array.from({ length: 24 }, (_, index) => ({ index, text: 'x' + index })) };
        table.add(entry);
        return entry;
      };
      for (let index = 0; index < 64; index++) open.push(next());
      for (let index = 0; index < 2000; index++) { table.delete(open.shift().requestId); open.push(next()); }
      gc();
      gc();
      await new Promise((resolve) => setImmediate(resolve));
      let grown = 0;
      let last = oldGeneration();
      for (let index = 1; index <= count; index++) {
        table.delete(open.shift().requestId);
        open.push(next());
        if (index % 1000 === 0) { const now = oldGeneration(); grown += Math.max(0, now - last); last = now; }
      }
      for (const entry of open) table.delete(entry.requestId);
      return Math.round(grown / 1e5) / 10;
    }
    const withSlots = await promotedWhile(new InFlightRequests('p'), 100000);
    const withMap = await promotedWhile(new MapRequests(), 100000);
    process.stdout.write(JSON.stringify({ withSlots, withMap }));
  `;

  /** Compiles the two source files to `dir` as ES modules, beside the measuring script. */
  function compileTo(dir: string): void {
    for (const file of ['core/slots.ts', 'core/gather/in-flight.ts']) {
      const source = readFileSync(join(SOURCE, file), 'utf8');
      const output = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file.replace(/\.ts$/, '.js')), output);
    }
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    writeFileSync(join(dir, 'measure.js'), measure);
  }

  it('drags no request into it, where a Map drags nearly every one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'in-flight-'));
    try {
      compileTo(dir);
      const { withSlots, withMap } = JSON.parse(execFileSync(process.execPath, ['--expose-gc', join(dir, 'measure.js')], { encoding: 'utf8', timeout: 60_000 })) as { withSlots: number; withMap: number };
      // 100,000 requests of about 1.5 KB each: a Map promotes well over 50 MB of them.
      expect({ withMap: withMap > 50 ? 'over 50 MB' : `${withMap} MB`, withSlots: withSlots < 5 ? 'under 5 MB' : `${withSlots} MB` }).toEqual({ withMap: 'over 50 MB', withSlots: 'under 5 MB' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
