// The demo page in a real browser: headless Chromium from the Debian package, driven by
// playwright-core. Never a browser download: without /usr/bin/chromium this suite fails and says why.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { ResourceServiceProcess, startResourceServices, stopResourceServices, waitForPresence } from '../support/resource-service.js';

const CHROMIUM = '/usr/bin/chromium';
/** Set SCREENSHOT_PATH to keep the screenshot of the page after a lookup; otherwise it goes to this run's own temporary folder, removed at the end. */
const SCREENSHOT_PATH = process.env.SCREENSHOT_PATH;
const NAMES = ['one', 'three', 'two'];

describe('resource-service page in headless Chromium', () => {
  let redis: TestRedis;
  let instances: ResourceServiceProcess[];
  /** This run's temporary folder: the browser profile and the screenshot, removed after the run. */
  let runDir: string;
  let browser: BrowserContext;
  let page: Page;
  const byName = (name: string): ResourceServiceProcess => instances.find((instance) => instance.name === name)!;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: this test drives the Debian Chromium and never downloads a browser. Install it with: apt-get install chromium`);
    }
    redis = await startRedis();
    // A short deadline, so that the frozen-instance lookup below ends quickly.
    instances = await startResourceServices(redis.url, `browser-${randomBytes(4).toString('hex')}`, undefined, { LOOKUP_TIMEOUT_MS: '1500' });
    runDir = mkdtempSync(join(tmpdir(), 'resource-service-browser-'));
    // Playwright's artifacts folder and Chromium's own temporary files go into this run's folder too.
    const sharedTmp = process.env.TMPDIR;
    process.env.TMPDIR = runDir;
    try {
      browser = await chromium.launchPersistentContext(join(runDir, 'chromium-profile'), {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1200, height: 900 },
      });
    } finally {
      if (sharedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = sharedTmp;
    }
    page = browser.pages()[0] ?? (await browser.newPage());
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (runDir) rmSync(runDir, { recursive: true, force: true });
    if (instances) await stopResourceServices(instances);
    await redis?.stop();
  }, 30_000);

  /** The cards on `on`, as [instance, state]. */
  async function cards(on: Page): Promise<string[][]> {
    return on.locator('[data-testid=instances] .instance').evaluateAll((nodes) => nodes.map((node) => [node.getAttribute('data-instance')!, node.getAttribute('data-state')!]));
  }

  async function openPage(on: Page, url: string): Promise<void> {
    await on.goto(`${url}/`);
    await on.locator('[data-testid=live-status].on').waitFor();
    await on.locator('[data-testid=instances] .instance[data-state=answering]').nth(2).waitFor();
  }

  it('shows the live instances, looks a resource up and shows the reply of every instance', async () => {
    const one = byName('one');
    const externalRequests: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(one.url)) externalRequests.push(request.url());
    });

    await openPage(page, one.url);
    expect(await cards(page)).toEqual(NAMES.map((name) => [name, 'answering']));
    expect(await page.locator('#self-name').textContent()).toBe('one');

    await page.fill('[data-testid=resource-id]', 'e');
    await page.click('[data-testid=lookup]');
    await page.locator('[data-testid=summary]:not([hidden])').waitFor();

    const rows = page.locator('[data-testid=replies] tr.reply');
    expect(await rows.count()).toBe(3);
    const replies = await rows.evaluateAll((elements) =>
      elements.map((row) => ({ instance: row.getAttribute('data-instance'), holds: row.children[2]!.textContent })),
    );
    expect(replies.map((reply) => reply.instance).sort()).toEqual(NAMES);
    expect(replies.filter((reply) => reply.holds === 'yes').map((reply) => reply.instance)).toEqual(['three']);
    const summary = await page.locator('[data-testid=summary]').textContent();
    expect(summary).toContain('Held by three: GET /resources/e answers 200');
    expect(summary).toContain('completed by all');

    await page.screenshot({ path: SCREENSHOT_PATH ?? join(runDir, 'page.png'), fullPage: true });
    // The page is self-contained: everything it loaded came from the instance itself.
    expect(externalRequests).toEqual([]);
  });

  it('says at once that nobody holds an unknown resource, and that the answer is 404', async () => {
    await page.fill('[data-testid=resource-id]', 'nowhere');
    await page.click('[data-testid=lookup]');
    await page.locator('[data-testid=summary].missing').waitFor();
    expect(await page.locator('[data-testid=replies] tr.reply').count()).toBe(3);
    expect(await page.locator('[data-testid=summary]').textContent()).toContain('No instance holds "nowhere": all 3 instances that received the request said no');
    expect(await page.locator('[data-testid=summary]').textContent()).toContain('answers 404 at once');
  });

  it('"Hold it here" clears the previous lookup\'s rows and says what happened; a resource held elsewhere is refused naming its owner', async () => {
    await page.fill('[data-testid=resource-id]', 'held-here');
    await page.click('[data-testid=put-here]');
    await page.locator('[data-testid=summary]:has-text("one now holds held-here")').waitFor();
    expect(await page.locator('[data-testid=replies] tr').count()).toBe(0);

    await page.fill('[data-testid=resource-id]', 'e');
    await page.click('[data-testid=put-here]');
    await page.locator('[data-testid=summary]:has-text("409")').waitFor();
    expect(await page.locator('[data-testid=summary]').textContent()).toContain('Instance "three" already holds resource "e"');
  });

  it('shows a change made through a page on one instance, within a second, on a page served by another', async () => {
    const second = await browser.newPage();
    try {
      await openPage(second, byName('two').url);
      expect(await second.locator('#self-name').textContent()).toBe('two');

      await page.fill('[data-testid=resource-id]', 'shared');
      await page.click('[data-testid=put-here]');
      await second.locator('[data-testid=activity] li:has-text("one now holds shared (v1)")').waitFor({ timeout: 1000 });
      // The figures follow: the chip appears on instance one's card, on the page served by two.
      await second.locator('[data-testid=instances] .instance[data-instance=one] .chip:text-is("shared")').waitFor({ timeout: 3000 });
      // Every instance's `resource.>` topic handler saw the change: the card of each says so.
      for (const name of NAMES) {
        await second.locator(`[data-testid=instances] .instance[data-instance=${name}] .activity:has-text("resource.> saw resource.changed: put shared by one")`).waitFor({ timeout: 3000 });
      }

      // Deleted through the second page (served by two, owned by one): the first page hears it.
      await second.fill('[data-testid=resource-id]', 'shared');
      await second.click('[data-testid=delete-here]');
      await page.locator('[data-testid=activity] li:has-text("shared deleted from one (asked via two)")').waitFor({ timeout: 1000 });
      // The second page's own answer (its DELETE's response) may land after the broadcast reached the first.
      await second.locator('[data-testid=summary]:has-text("shared deleted from one (asked via two)")').waitFor({ timeout: 3000 });
    } finally {
      await second.close();
    }
  });

  it('shows a frozen instance as not answering, the lookup waiting for it, then a partial answer (504) naming it', async () => {
    const three = byName('three');
    three.signal('SIGSTOP');
    try {
      await page.locator('[data-testid=instances] .instance[data-instance=three][data-state="not answering"]').waitFor({ timeout: 3000 });
      await page.fill('[data-testid=resource-id]', 'frozen-miss');
      await page.click('[data-testid=lookup]');
      await page.locator('[data-testid=waiting]:has-text("waiting for 1 more: three")').waitFor({ timeout: 1000 });
      await page.locator('[data-testid=summary].partial').waitFor({ timeout: 5000 });
      const summary = await page.locator('[data-testid=summary]').textContent();
      expect(summary).toContain('Partial answer: 2 instances said no, and three (silent) did not answer');
      expect(summary).toContain('answers 504');
      expect(await page.locator('[data-testid=replies] tr.silent[data-instance=three]').count()).toBe(1);
      expect(await page.locator('[data-testid=waiting]').isHidden()).toBe(true);
    } finally {
      three.signal('SIGCONT');
    }
    await waitForPresence(instances, NAMES);
    await page.locator('[data-testid=instances] .instance[data-instance=three][data-state=answering]').waitFor({ timeout: 3000 });
  });
});
