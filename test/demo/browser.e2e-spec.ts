// The demo page in a real browser: headless Chromium from the Debian package, driven by
// playwright-core. Never a browser download: without /usr/bin/chromium this suite fails and says why.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { ResourceServiceProcess, startResourceServices, stopResourceServices } from '../support/resource-service.js';

const CHROMIUM = '/usr/bin/chromium';
/** Set SCREENSHOT_PATH to keep the screenshot of the page after a lookup; otherwise it goes to this run's own temporary folder, removed at the end. */
const SCREENSHOT_PATH = process.env.SCREENSHOT_PATH;

describe('resource-service page in headless Chromium', () => {
  let redis: TestRedis;
  let instances: ResourceServiceProcess[];
  let userDataDir: string;
  /** This run's temporary folder: the browser profile and the screenshot, removed after the run. */
  let runDir: string;
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: this test drives the Debian Chromium and never downloads a browser. Install it with: apt-get install chromium`);
    }
    redis = await startRedis();
    instances = await startResourceServices(redis.url, `browser-${randomBytes(4).toString('hex')}`);
    runDir = mkdtempSync(join(tmpdir(), 'resource-service-browser-'));
    userDataDir = join(runDir, 'chromium-profile');
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1200, height: 900 },
    });
    page = browser.pages()[0] ?? (await browser.newPage());
  });

  afterAll(async () => {
    await browser?.close();
    if (runDir) rmSync(runDir, { recursive: true, force: true });
    if (instances) await stopResourceServices(instances);
    await redis?.stop();
  });

  it('shows the live instances, looks a resource up and shows the reply of every instance', async () => {
    const one = instances.find((instance) => instance.name === 'one')!;
    const externalRequests: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(one.url)) externalRequests.push(request.url());
    });

    await page.goto(`${one.url}/`);
    await page.locator('[data-testid=instances] .instance').nth(2).waitFor();
    const cards = await page.locator('[data-testid=instances] .instance .name').allTextContents();
    expect(cards.sort()).toEqual(['one', 'three', 'two']);
    expect(await page.locator('#self-name').textContent()).toBe('one');

    await page.fill('[data-testid=resource-id]', 'e');
    await page.click('[data-testid=lookup]');
    await page.locator('[data-testid=summary]:not([hidden])').waitFor();

    const rows = page.locator('[data-testid=replies] tr.reply');
    expect(await rows.count()).toBe(3);
    const replies = await rows.evaluateAll((elements) =>
      elements.map((row) => ({ instance: row.getAttribute('data-instance'), holds: row.children[2]!.textContent })),
    );
    expect(replies.map((reply) => reply.instance).sort()).toEqual(['one', 'three', 'two']);
    expect(replies.filter((reply) => reply.holds === 'yes').map((reply) => reply.instance)).toEqual(['three']);
    const summary = await page.locator('[data-testid=summary]').textContent();
    expect(summary).toContain('Held by three');
    expect(summary).toContain('completed by all');

    await page.screenshot({ path: SCREENSHOT_PATH ?? join(runDir, 'page.png'), fullPage: true });
    // The page is self-contained: everything it loaded came from the instance itself.
    expect(externalRequests).toEqual([]);
  });

  it('says at once that nobody holds an unknown resource', async () => {
    await page.fill('[data-testid=resource-id]', 'nowhere');
    await page.click('[data-testid=lookup]');
    await page.locator('[data-testid=summary].missing').waitFor();
    expect(await page.locator('[data-testid=replies] tr.reply').count()).toBe(3);
    expect(await page.locator('[data-testid=summary]').textContent()).toContain('No instance holds "nowhere"');
  });
});
