/** How one instance of the resource service is configured, read once from the environment. */
export interface ServiceConfig {
  /** This instance's name (`INSTANCE_NAME`); it is also its instance id on the buffer. */
  readonly instanceName: string;
  /** The ids of the resources this instance owns at start-up (`RESOURCES=a,b`). */
  readonly resources: readonly string[];
  /** HTTP port (`PORT`). */
  readonly port: number;
  /** HTTP bind address (`HOST`); `0.0.0.0` in a container. */
  readonly host: string;
  /** The URL other people reach this instance at (`PUBLIC_URL`), shown on the page and in `/stats`. */
  readonly publicUrl: string;
  /** Where Redis is (`REDIS_URL`). */
  readonly redisUrl: string;
  /** Channel prefix (`NAMESPACE`): instances in different namespaces never see each other. */
  readonly namespace: string;
  /** Hard bound, in ms, on every gather this instance makes (`LOOKUP_TIMEOUT_MS`). */
  readonly lookupTimeoutMs: number;
  /**
   * The demo launcher's control endpoint (`DEMO_CONTROL_URL`, set by `npm run demo` only): lets the
   * page freeze, thaw, kill and restart instances. Unset, the `/demo` routes answer 404.
   */
  readonly demoControlUrl: string | undefined;
  /** The token the launcher's control endpoint requires (`DEMO_CONTROL_TOKEN`). */
  readonly demoControlToken: string | undefined;
}

/** The Nest injection token of the `ServiceConfig`. */
export const SERVICE_CONFIG = Symbol('ServiceConfig');

/** Resource ids: short, URL-safe, the same alphabet as the library's names. */
export const RESOURCE_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Reads and validates the configuration; throws an error naming the variable at fault. */
export function loadServiceConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const instanceName = env.INSTANCE_NAME ?? '';
  if (!RESOURCE_ID_PATTERN.test(instanceName)) {
    throw new Error(`INSTANCE_NAME must be 1 to 64 letters, digits, "_", "-" or "." (got ${JSON.stringify(instanceName)}).`);
  }
  const resources = (env.RESOURCES ?? '')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id.length > 0);
  const badResource = resources.find((id) => !RESOURCE_ID_PATTERN.test(id));
  if (badResource !== undefined) {
    throw new Error(`RESOURCES must be a comma-separated list of ids made of letters, digits, "_", "-" or "." (got ${JSON.stringify(badResource)}).`);
  }
  const port = integer('PORT', env.PORT, 3000, 1, 65_535);
  const host = env.HOST ?? '127.0.0.1';
  const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  if (!/^rediss?:\/\//.test(redisUrl)) throw new Error(`REDIS_URL must be a redis:// or rediss:// URL (got ${JSON.stringify(redisUrl)}).`);
  return {
    instanceName,
    resources: [...new Set(resources)],
    port,
    host,
    publicUrl: env.PUBLIC_URL ?? `http://localhost:${port}`,
    redisUrl,
    namespace: env.NAMESPACE ?? 'resource-service',
    lookupTimeoutMs: integer('LOOKUP_TIMEOUT_MS', env.LOOKUP_TIMEOUT_MS, 3000, 1, 60_000),
    demoControlUrl: demoControlUrl(env.DEMO_CONTROL_URL),
    demoControlToken: env.DEMO_CONTROL_TOKEN || undefined,
  };
}

/** The launcher listens on loopback only; anything else is refused rather than trusted. */
function demoControlUrl(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d+\/?$/.test(raw)) throw new Error(`DEMO_CONTROL_URL must be http://127.0.0.1:<port> (got ${JSON.stringify(raw)}).`);
  return raw.replace(/\/$/, '');
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)}).`);
  return value;
}
