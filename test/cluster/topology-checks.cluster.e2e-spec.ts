// How a process finds a Redis Cluster: from a seed that lists only a replica, and what it is told
// when it is given a single-node URL that points at a cluster node.
import { BufferClient, InvalidOptionsError } from 'nestjs-redis-buffer';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { startCluster, type TestCluster } from '../support/redis-cluster.js';

const namespace = 'ctopo';

describe('Redis Cluster: seeds and mode', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('a seed that lists only a replica starts callers and instances as fast as a master seed does', async () => {
    const replica = await cluster.replicaOf((await cluster.masters())[0]!);
    const connection = { cluster: { nodes: [{ host: '127.0.0.1', port: replica }] } };
    let instances: InstanceProcess[] = [];
    const client = new BufferClient({ ...connection, namespace, timeout: 3000, connectTimeout: 5000 });
    try {
      const started = Date.now();
      await client.connect();
      expect(Date.now() - started).toBeLessThan(2000);
      instances = await startInstances(['r1', 'r2'].map((instanceId) => ({ instanceId, connection, namespace })));
      const result = await client.gather<string>('whoami', null);
      expect(result.expected).toBe(2);
      expect(result.replies.map((reply) => reply.data).sort()).toEqual(['r1', 'r2']);
    } finally {
      await client.close();
      await stopAll(instances);
    }
  }, 60_000);

  it('a single-node "redis" URL that points at a cluster node is refused at start-up, naming "cluster"', async () => {
    const port = (await cluster.masters())[1]!;
    const client = new BufferClient({ redis: `redis://127.0.0.1:${port}`, namespace, connectTimeout: 5000 });
    try {
      const error = await client.connect().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(InvalidOptionsError);
      expect(error).toMatchObject({ code: 'BUFFER_INVALID_OPTIONS' });
      expect(String((error as Error).message)).toMatch(/cluster_enabled|cluster node/);
      expect(String((error as Error).message)).toContain('"cluster"');
    } finally {
      await client.close();
    }
  }, 30_000);
});
