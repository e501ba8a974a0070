import { clusterTarget } from '../support/redis-target.js';
import { describeScatterGather } from '../e2e/scatter-gather.suite.js';

// The same suite as on one server, on a 3-master Redis Cluster: every channel sharded.
describeScatterGather('a 3-master Redis Cluster', () => clusterTarget({ masters: 3 }));
