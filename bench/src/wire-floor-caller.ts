// The least a caller of the simulated instances (sim-instances.ts) can do: plain ioredis, the
// library's wire (a batch of compact requests after its head, compact replies back), requests of one
// event-loop turn in one PUBLISH, and a gather done when `expected` replies have arrived, counted
// by id. No validation, deadlines, membership, or result: what is left of a gather's time and CPU
// is Redis's, the simulated instances' and the machine's, the floor under the library's figures.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ECHO_PATTERN, REQUEST_DATA } from './common.js';

interface Open {
  readonly expected: number;
  got: number;
  readonly done: () => void;
}

export class WireFloorCaller {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly inbox: string;
  private readonly open = new Map<string, Open>();
  private readonly prefix = randomBytes(4).toString('hex');
  private nextId = 0;
  private queued: string[] = [];
  private scheduled = false;
  private readonly requestJson = JSON.stringify(REQUEST_DATA);

  constructor(
    url: string,
    private readonly namespace: string,
  ) {
    this.pub = new Redis(url, { lazyConnect: true });
    this.sub = new Redis(url, { lazyConnect: true });
    this.inbox = `${namespace}:inbox:wire-floor-${this.prefix}`;
  }

  async connect(): Promise<void> {
    await Promise.all([this.pub.connect(), this.sub.connect()]);
    this.sub.on('message', (_channel: string, message: string) => this.receive(message));
    await this.sub.subscribe(this.inbox);
  }

  /** One gather: resolves once `expected` replies to it have arrived. */
  gather(expected: number): Promise<void> {
    return new Promise((resolve) => {
      const id = `${this.prefix}${(this.nextId++).toString(36)}`;
      this.open.set(id, { expected, got: 0, done: resolve });
      this.queued.push(`["${id}","${ECHO_PATTERN}",30000,${this.requestJson}]`);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  async close(): Promise<void> {
    this.pub.disconnect();
    this.sub.disconnect();
  }

  private flush(): void {
    this.scheduled = false;
    const requests = this.queued;
    this.queued = [];
    const head = `{"v":1,"kind":"requests","from":"wire-floor","replyTo":"${this.inbox}","cr":1,"sent":${Date.now()}}`;
    void this.pub.publish(`${this.namespace}:req:${ECHO_PATTERN}`, `[${head},${requests.join(',')}]`);
  }

  private receive(message: string): void {
    const parsed = JSON.parse(message) as unknown;
    if (!Array.isArray(parsed)) return;
    for (const element of parsed) {
      if (!Array.isArray(element)) continue;
      const entry = this.open.get(element[0] as string);
      if (entry !== undefined && ++entry.got === entry.expected) {
        this.open.delete(element[0] as string);
        entry.done();
      }
    }
  }
}
