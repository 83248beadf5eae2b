// Shared set-up for the browser tests: the static server on 127.0.0.1, real Debian Chromium
// (never a downloaded browser), a request log, and screenshots into test-output/.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { serve } from '../../scripts/serve.mjs';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const OUT = process.env.KTO_TEST_OUT || join(ROOT, 'test-output');
mkdirSync(OUT, { recursive: true });

const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-default-apps'];
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader',
  '--use-webgpu-adapter=swiftshader', '--enable-unsafe-swiftshader'];

/** Start server + browser. `webgpu: false` launches Chromium without any WebGPU adapter;
 *  `isolated: false` serves the app without COOP/COEP (no shared memory: one engine thread). */
export async function launch({ webgpu = true, isolated = true, root = join(ROOT, 'dist') } = {}) {
  const server = await serve(root, 0, { isolated });
  const origin = `http://127.0.0.1:${server.address().port}`;
  const userDataDir = mkdtempSync(join(tmpdir(), 'kto-chromium-'));
  const args = [...BASE_FLAGS, ...(webgpu ? WEBGPU_FLAGS : ['--disable-gpu', '--disable-features=WebGPU,Vulkan'])];
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  const page = context.pages()[0] || (await context.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('worker', (w) => w.on('console', (m) => consoleLines.push(`worker ${m.type()}: ${m.text()}`)));
  page.on('dialog', (d) => d.accept());
  return {
    page, context, origin, requests, consoleLines,
    async shot(name) { await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true }); },
    async close() { await context.close(); server.close(); },
  };
}

export async function openApp(env, query = '') {
  await env.page.goto(`${env.origin}/${query}`);
  await env.page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
}

export async function view(page, name) {
  await page.click(`nav button[data-view="${name}"]`);
}

/** Run `body(env)` against a freshly launched browser; on failure keep a screenshot and the console. */
export async function withBrowser(options, name, body) {
  const env = await launch(options);
  try {
    await body(env);
  } catch (e) {
    await env.shot(`failure-${name}`).catch(() => {});
    console.error(env.consoleLines.slice(-40).join('\n'));
    throw e;
  } finally {
    await env.close();
  }
}

/** Every label row in the page's IndexedDB (read straight from the store, not through the app). */
export async function labelsInDb(page) {
  return page.evaluate(() => new Promise((ok, fail) => {
    const open = indexedDB.open('kto-studio');
    open.onsuccess = () => {
      const r = open.result.transaction('labels').objectStore('labels').getAll();
      r.onsuccess = () => ok(r.result.map(({ prompt, completion, label }) => ({ prompt, completion, label })));
      r.onerror = () => fail(r.error);
    };
  }));
}
