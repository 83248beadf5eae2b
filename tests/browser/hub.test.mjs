// Opening a model by id from a Hub (a local stand-in serving a family model under the Hub's URL
// layout, tests/hub/server.mjs): progress bar, a download broken off halfway that resumes with a
// byte range, the model kept in OPFS; after a reload it reopens from the library with no request at
// all; the library renames, lists sizes and the quota, and deletes. Every request the browser makes
// is recorded: only GETs of the listing and the model's files, to the Hub, and nothing else leaves.
import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHub } from '../hub/server.mjs';
import { openApp, withBrowser, ROOT } from './harness.mjs';

const REPO = 'kto-test/tiny-qwen3';

test('a Hub model downloads with progress, resumes, and reopens from OPFS offline', { timeout: 300_000 }, async () => {
  // A GGUF repo as people publish them: one file per quantization (here two family models as GGUF).
  const ggufRepo = mkdtempSync(join(tmpdir(), 'kto-hub-gguf-'));
  copyFileSync(join(ROOT, 'tests/golden/gguf/family/gpt2_03.gguf'), join(ggufRepo, 'tiny.Q8_0.gguf'));
  copyFileSync(join(ROOT, 'tests/golden/gguf/family/qwen3_06.gguf'), join(ggufRepo, 'tiny.Q4_K_M.gguf'));
  const hub = await startHub({
    repos: { [REPO]: join(ROOT, 'tests/golden/family/qwen3_05'), 'kto-test/tiny-GGUF': ggufRepo },
    cut: 'model.safetensors',
  });
  try {
    await withBrowser({ webgpu: false }, 'hub', async (env) => {
      const { page } = env;
      const seen = [];
      env.context.on('request', (r) => seen.push({ method: r.method(), url: r.url() }));
      await openApp(env, `?backend=cpu&hub=${encodeURIComponent(hub.url)}`);
      const appRequests = seen.length;
      const progress = [];
      await page.exposeFunction('noteProgress', (v) => progress.push(v));
      await page.evaluate(() => {
        const bar = document.querySelector('[data-testid=hub-progress]');
        new MutationObserver(() => window.noteProgress([bar.value, bar.max, document.querySelector('[data-testid=hub-status]').textContent]))
          .observe(document.querySelector('[data-testid=hub-status]'), { childList: true, characterData: true, subtree: true });
      });

      await page.fill('[data-testid=hub-id]', REPO);
      await page.click('[data-testid=hub-open]');
      await page.waitForFunction((r) => document.querySelector('[data-testid=model-name]')?.textContent === r, REPO, { timeout: 120_000 });
      await page.waitForFunction(() => /kept in this browser/.test(document.querySelector('[data-testid=hub-status]').textContent));
      assert.equal(await page.textContent('[data-testid=model-family]'), 'Qwen3');
      assert.equal(await page.textContent('[data-testid=model-read]'), 'config.json, model.safetensors, tokenizer.json, tokenizer_config.json');
      assert.ok(progress.some(([, , text]) => /model\.safetensors \d+%/.test(text)), JSON.stringify(progress));
      assert.ok(progress.some(([, , text]) => /resuming/.test(text)), 'the broken download said it resumes');
      const [value, max] = await page.evaluate(() => {
        const bar = document.querySelector('[data-testid=hub-progress]');
        return [bar.value, bar.max];
      });
      assert.ok(max > 100_000 && value === max, `progress ${value}/${max}`);

      // Exactly the GETs the plan names, at the listing's commit, one resumed with a range.
      const sha = hub.commitOf(REPO);
      const file = (f) => `/${REPO}/resolve/${sha}/${f}`;
      const half = Math.floor((await import('node:fs')).statSync(join(ROOT, 'tests/golden/family/qwen3_05/model.safetensors')).size / 2);
      assert.deepEqual(hub.requests.map((r) => [r.method, r.path, r.range]), [
        ['GET', `/api/models/${REPO}/revision/main`, null],
        ['GET', file('config.json'), null],
        ['GET', file('tokenizer_config.json'), null],
        ['GET', file('tokenizer.json'), null],
        ['GET', file('model.safetensors'), null],
        ['GET', file('model.safetensors'), `bytes=${half}-`],
      ]);
      const downloadPhase = seen.slice(appRequests);
      assert.ok(downloadPhase.every((r) => r.method === 'GET' && r.url.startsWith(hub.url)),
        `only GETs to the Hub: ${JSON.stringify(downloadPhase)}`);

      // The model works: greedy text from it.
      const text = await page.evaluate(() => window.ktoStudio.app.engine.call('generate',
        { prompt: 'Once', n: 1, sampling: { temperature: 0, max_tokens: 4, top_k: 0, top_p: 1, seed: 1, stop: [] }, which: 'base', chat: false }));
      assert.equal(text.length, 1);
      const pageBefore0 = seen.length;

      // Reload: the page reopens it from OPFS by itself, and the library lists it with its size;
      // opening it again from there makes no request at all.
      const hubBefore = hub.requests.length;
      await page.reload();
      await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
      assert.equal(await page.textContent('[data-testid=model-name]'), REPO, 'the reload reopened the Hub model');
      assert.equal(hub.requests.length, hubBefore, 'reopening after the reload asked the Hub nothing');
      assert.ok(seen.slice(pageBefore0).every((r) => r.url.startsWith(env.origin)), 'the reload fetched only the app itself');
      const pageBefore = seen.length;
      await page.waitForSelector('[data-testid=library-row][data-kind=model]');
      assert.equal(await page.textContent('[data-testid=library-row][data-kind=model] [data-testid=library-label]'), REPO);
      assert.match(await page.textContent('[data-testid=library-row][data-kind=model] [data-testid=library-size]'), /kB|MB/);
      assert.match(await page.textContent('[data-testid=storage-quota]'), /used of .* it allows/);
      await page.click('[data-testid=library-row][data-kind=model] [data-testid=library-open]');
      await page.waitForFunction(() => /no download/.test(document.querySelector('[data-testid=hub-status]').textContent), null, { timeout: 60_000 });
      assert.equal(await page.textContent('[data-testid=model-name]'), REPO);
      assert.equal(hub.requests.length, hubBefore, 'the Hub was not asked again');
      assert.deepEqual(seen.slice(pageBefore), [], 'opening from OPFS made no request');
      await env.shot('hub-library');

      // Rename (kept across reloads), then delete: the row and its bytes go.
      await page.click('[data-testid=library-row][data-kind=model] [data-testid=library-rename]');
      await page.fill('[data-testid=library-rename-input]', 'my tiny qwen3');
      await page.press('[data-testid=library-rename-input]', 'Enter');
      await page.waitForFunction(() => document.querySelector('[data-testid=library-row][data-kind=model] [data-testid=library-label]')?.textContent === 'my tiny qwen3');
      await page.reload();
      await page.waitForFunction(() => document.querySelector('[data-testid=library-row][data-kind=model] [data-testid=library-label]')?.textContent === 'my tiny qwen3', null, { timeout: 120_000 });
      await page.click('[data-testid=library-row][data-kind=model] [data-testid=library-delete]');
      await page.waitForFunction(() => !document.querySelector('[data-testid=library-row][data-kind=model]'));
      const left = await page.evaluate(async () => {
        const names = [];
        for await (const k of (await (await navigator.storage.getDirectory()).getDirectoryHandle('hub')).keys()) names.push(k);
        return names;
      });
      assert.deepEqual(left, [], 'nothing of the model is left in OPFS');

      // Not enough space: the origin's quota (set through DevTools: the browser itself refuses the
      // write) is below what the model needs. A clear message; the files that fit are kept, and once
      // space is back the download finishes fetching only what is missing.
      const cdp = await env.context.newCDPSession(page);
      const usage = await page.evaluate(async () => (await navigator.storage.estimate()).usage);
      await cdp.send('Storage.overrideQuotaForOrigin', { origin: env.origin, quotaSize: usage + 50_000 });
      await page.fill('[data-testid=hub-id]', REPO);
      await page.click('[data-testid=hub-open]');
      await page.waitForSelector('[data-testid=hub-error]:not([hidden])');
      assert.match(await page.textContent('[data-testid=hub-error]'),
        /(refused space for model\.safetensors|allows KTO Studio only).*Delete models you no longer need/);
      await page.waitForFunction(() => /partly downloaded/.test(document.querySelector('[data-testid=library-row][data-kind=model] [data-testid=library-label]')?.textContent || ''));
      await cdp.send('Storage.overrideQuotaForOrigin', { origin: env.origin });
      const beforeRetry = hub.requests.length;
      await page.click('[data-testid=hub-open]');
      await page.waitForFunction(() => /kept in this browser/.test(document.querySelector('[data-testid=hub-status]').textContent), null, { timeout: 60_000 });
      assert.deepEqual(hub.requests.slice(beforeRetry).map((r) => r.path),
        [`/api/models/${REPO}/revision/main`, file('model.safetensors')], 'only the refused file is fetched again');

      // A GGUF repo of several quantizations: the page lists them (Q4_K_M first) and opens the one picked.
      await page.fill('[data-testid=hub-id]', 'kto-test/tiny-GGUF');
      await page.click('[data-testid=hub-open]');
      await page.waitForSelector('[data-testid=hub-choice]:not([hidden])');
      assert.deepEqual(await page.$$eval('[data-testid=hub-file] option', (os) => os.map((o) => o.value)), ['tiny.Q4_K_M.gguf', 'tiny.Q8_0.gguf']);
      await page.selectOption('[data-testid=hub-file]', 'tiny.Q8_0.gguf');
      await page.click('[data-testid=hub-choice-open]');
      await page.waitForFunction(() => document.querySelector('[data-testid=model-family]')?.textContent === 'GPT-2', null, { timeout: 60_000 });
      const ggufSha = hub.commitOf('kto-test/tiny-GGUF');
      assert.deepEqual(hub.requests.slice(-3).map((r) => r.path), [
        '/api/models/kto-test/tiny-GGUF/revision/main', '/api/models/kto-test/tiny-GGUF/revision/main',
        `/kto-test/tiny-GGUF/resolve/${ggufSha}/tiny.Q8_0.gguf`]);

      // A clear error for an id the Hub does not have.
      await page.fill('[data-testid=hub-id]', 'kto-test/missing');
      await page.click('[data-testid=hub-open]');
      await page.waitForSelector('[data-testid=hub-error]:not([hidden])');
      assert.match(await page.textContent('[data-testid=hub-error]'), /has no model kto-test\/missing/);
      assert.ok(seen.slice(appRequests).every((r) => r.method === 'GET' && (r.url.startsWith(hub.url) || r.url.startsWith(env.origin))),
        'no request left for anywhere but the Hub (and the app\'s own reload)');
    });
  } finally {
    await hub.close();
  }
});
