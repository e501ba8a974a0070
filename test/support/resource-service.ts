import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';
import { stopChild } from './instances.js';

const here = dirname(fileURLToPath(import.meta.url));
export const RESOURCE_SERVICE_MAIN = join(here, '..', '..', 'apps', 'resource-service', 'dist', 'main.js');

export interface ResourceServiceSpec {
  readonly name: string;
  readonly resources: readonly string[];
  readonly redisUrl: string;
  readonly namespace: string;
  /** A free loopback port when unset. */
  readonly port?: number;
  readonly env?: Record<string, string>;
}

/** One instance of apps/resource-service running as its own Node process, serving HTTP on loopback. */
export class ResourceServiceProcess {
  private output = '';

  private constructor(
    readonly spec: ResourceServiceSpec,
    readonly url: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(spec: ResourceServiceSpec, timeoutMs = 20_000): Promise<ResourceServiceProcess> {
    if (!existsSync(RESOURCE_SERVICE_MAIN)) throw new Error(`${RESOURCE_SERVICE_MAIN} is missing: run "npm run build" first.`);
    const port = spec.port ?? (await freePort());
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(process.execPath, [RESOURCE_SERVICE_MAIN], {
      env: {
        ...process.env,
        INSTANCE_NAME: spec.name,
        RESOURCES: spec.resources.join(','),
        PORT: String(port),
        HOST: '127.0.0.1',
        PUBLIC_URL: url,
        REDIS_URL: spec.redisUrl,
        NAMESPACE: spec.namespace,
        ...spec.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const instance = new ResourceServiceProcess(spec, url, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`resource-service ${spec.name} not ready after ${timeoutMs} ms:\n${instance.output}`)), timeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        instance.output += chunk.toString();
        // Printed after the transport subscribed and the HTTP server listens.
        if (instance.output.includes(`READY ${spec.name} `)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => (instance.output += chunk.toString()));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`resource-service ${spec.name} exited (${code ?? signal}) before it was ready:\n${instance.output}`));
      });
    });
    return instance;
  }

  get name(): string {
    return this.spec.name;
  }

  get logs(): string {
    return this.output;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends `signal` without waiting (SIGSTOP / SIGCONT to freeze and thaw it). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Sends `signal` and waits for the exit; resolves with the exit code or signal. */
  stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | string> {
    return stopChild(this.child, signal, timeoutMs);
  }
}

/** The demo topology: three instances with different resources, as `npm run demo` starts them. */
export const DEMO_TOPOLOGY: ReadonlyArray<{ name: string; resources: readonly string[] }> = [
  { name: 'one', resources: ['a', 'b'] },
  { name: 'two', resources: ['c', 'd'] },
  { name: 'three', resources: ['e'] },
];

export async function startResourceServices(
  redisUrl: string,
  namespace: string,
  topology = DEMO_TOPOLOGY,
  env: Record<string, string> = {},
): Promise<ResourceServiceProcess[]> {
  const instances = await Promise.all(topology.map(({ name, resources }) => ResourceServiceProcess.start({ name, resources, redisUrl, namespace, env })));
  await waitForPresence(instances, topology.map(({ name }) => name));
  return instances;
}

/** Waits until every instance sees every name in `names` answering (their heartbeats arrive every 250 ms). */
export async function waitForPresence(instances: readonly ResourceServiceProcess[], names: readonly string[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const instance of instances) {
    for (;;) {
      const seen = (await (await fetch(`${instance.url}/live/instances`)).json()) as Array<{ instance: string; state: string }>;
      const answering = new Set(seen.filter((entry) => entry.state === 'answering').map((entry) => entry.instance));
      if (names.every((name) => answering.has(name))) break;
      if (Date.now() > deadline) throw new Error(`${instance.name} sees ${JSON.stringify(seen)}, not all of ${names.join(', ')} answering, after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

export async function stopResourceServices(instances: readonly ResourceServiceProcess[]): Promise<Array<number | string>> {
  return Promise.all(instances.map((instance) => instance.stop()));
}

/** One Server-Sent Event. */
export interface ServerSentEvent {
  readonly event: string;
  readonly data: unknown;
}

/** Reads a Server-Sent Events stream to its end and returns its events in order, `data` parsed as JSON. */
export async function readEventStream(url: string, timeoutMs = 10_000): Promise<{ contentType: string | null; events: ServerSentEvent[] }> {
  const response = await fetch(url, { headers: { Accept: 'text/event-stream' }, signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  const events: ServerSentEvent[] = [];
  // An SSE body is blocks separated by a blank line, each with `event:` and `data:` fields.
  for (const block of (await response.text()).split(/\r?\n\r?\n/)) {
    const event = parseEventBlock(block);
    if (event !== undefined) events.push(event);
  }
  return { contentType: response.headers.get('content-type'), events };
}

/** An open Server-Sent Events stream, read as events arrive. */
export interface LiveEventStream {
  readonly events: ServerSentEvent[];
  /** Resolves with the first event (already received or yet to come) that `match` accepts; rejects after `timeoutMs`. */
  waitFor(match: (event: ServerSentEvent) => boolean, timeoutMs?: number): Promise<ServerSentEvent>;
  close(): void;
}

/** Opens a Server-Sent Events stream (such as `GET /live`) and keeps reading it until `close()`. */
export async function openEventStream(url: string): Promise<LiveEventStream> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { Accept: 'text/event-stream' }, signal: controller.signal });
  if (!response.ok || response.body === null) throw new Error(`${url} answered ${response.status}`);
  const events: ServerSentEvent[] = [];
  const waiters = new Set<() => void>();
  void (async () => {
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        const blocks = pending.split(/\r?\n\r?\n/);
        pending = blocks.pop()!;
        for (const block of blocks) {
          const event = parseEventBlock(block);
          if (event !== undefined) events.push(event);
        }
        for (const wake of waiters) wake();
      }
    } catch {
      // Aborted by close(), or the server went away: the events so far stay readable.
    }
  })();
  return {
    events,
    waitFor: (match, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = events.find(match);
          if (found === undefined) return false;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(found);
          return true;
        };
        const wake = (): void => void check();
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(new Error(`No matching event on ${url} within ${timeoutMs} ms; got ${JSON.stringify(events)}`));
        }, timeoutMs);
        waiters.add(wake);
        check();
      }),
    close: () => controller.abort(),
  };
}

/** One SSE block (`event:` and `data:` lines; data parsed as JSON), or undefined when it has no data. */
function parseEventBlock(block: string): ServerSentEvent | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  return data.length > 0 ? { event, data: JSON.parse(data.join('\n')) } : undefined;
}
