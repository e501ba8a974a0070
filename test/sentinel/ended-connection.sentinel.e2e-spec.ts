// Fault suite on a Sentinel-managed Redis: a failover announced while the connections are asking a
// sentinel for the master. ioredis then ends those connections for good ("Connection is closed"
// from its Sentinel connector, without asking retryStrategy); the library starts them again, so
// every instance answers once the new master is known. Before that fix, an instance stayed
// subscribed (so counted by every request) with a publisher that never came back.
import { BufferClient } from 'nestjs-redis-buffer';
import { allAnswer } from '../support/fault-under-load.js';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { sleep } from '../support/raw-redis.js';
import { startSentinelGroup, type TestSentinelGroup } from '../support/redis-sentinel.js';
import { reportFault } from '../support/captured-logs.js';

const namespace = 'sended';

describe('fault: a Sentinel failover announced while the connections ask a sentinel for the master', () => {
  let group: TestSentinelGroup;
  let instances: InstanceProcess[];
  let client: BufferClient;

  beforeAll(async () => {
    group = await startSentinelGroup({ downAfterMs: 1000 });
    instances = await startInstances(['e1', 'e2'].map((instanceId) => ({ instanceId, connection: group.connection, namespace })));
    client = new BufferClient({ ...group.connection, namespace, timeout: 1000 });
    await client.connect();
  }, 90_000);

  afterAll(async () => {
    await client?.close();
    await stopAll(instances ?? []);
    await group?.stop();
  });

  it('connections ioredis ended during the failover are opened again, and every instance answers', async () => {
    expect((await client.gather<string>('whoami', null)).replies.map((r) => r.data).sort()).toEqual(['e1', 'e2']);
    const oldMaster = await group.masterPort();
    // Every connection asks the first sentinel of its list first: paused, it accepts the question
    // and answers nothing, so every reconnection attempt waits on it while the other two elect a
    // new master and announce it (+switch-master) to the failover detectors.
    group.pauseSentinel(0, true);
    const faultAt = Date.now();
    try {
      await group.server(oldMaster).kill();
      for (const deadline = Date.now() + 30_000; ; await sleep(100)) {
        const [, port] = (await group.sentinelCommand('get-master-addr-by-name', 'mymaster').catch(() => [undefined, oldMaster])) as [string, string | number];
        if (Number(port) !== oldMaster) break;
        if (Date.now() > deadline) throw new Error('the two sentinels left did not promote the replica within 30 s');
      }
      // The announcement reaches the detectors while the attempts still wait on the paused sentinel.
      await sleep(1500);
    } finally {
      group.pauseSentinel(0, false);
    }
    const allBackAt = await allAnswer(client, 2, 20_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${instances.map((instance) => `--- ${instance.id}:\n${instance.logs.slice(-2000)}`).join('\n')}`);
    });
    const revived = instances.filter((instance) => instance.logs.includes("without retrying")).map((instance) => instance.id);
    reportFault('sentinel-failover-while-resolving', { allInstancesBackMs: allBackAt - faultAt, revivedInstances: revived });
    expect(client.connectionStatus).toBe('connected');
    for (const instance of instances) expect(instance.exited).toBe(false);
  }, 120_000);
});
