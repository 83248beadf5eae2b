// Robustness in the page: a worker that dies mid-training (as it does on out-of-memory or a lost
// GPU device) — the page says so in one sentence, starts a fresh worker, offers the CPU backend
// and keeps every label; and a cluttered model folder picked whole reads only the model's weights.
import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labelsInDb, openApp, view, withBrowser, ROOT } from './harness.mjs';

test('a worker that dies mid-training is replaced; labels kept; CPU offered', { timeout: 900_000 }, () => withBrowser({ webgpu: true }, 'recovery', async (env) => {
  const { page } = env;
  await openApp(env, '?backend=webgpu');
  assert.equal(await page.getAttribute('#backend', 'data-backend'), 'wgpu');
  const rows = [
    { prompt: 'Once upon a time', completion: ' there was a happy cat.', label: true },
    { prompt: 'Tom had a ball.', completion: ' It was sad and lost.', label: false },
    { prompt: 'Lily liked the sun.', completion: ' She smiled.', label: true },
    { prompt: 'The dog ran.', completion: ' It fell and cried.', label: false },
  ];
  for (const r of rows) await page.evaluate((row) => window.ktoStudio.app.addLabel(row), r);
  const before = await labelsInDb(page);
  assert.equal(before.length, 4);

  await view(page, 'train');
  await page.fill('[data-testid=steps]', '500');
  await page.fill('[data-testid=batch-size]', '2');
  await page.click('[data-testid=train]');
  await page.waitForFunction(() => window.ktoStudio.views.train.history.length >= 1, null, { timeout: 300_000 });

  // Kill it the way a real failure does: an error nothing inside the worker catches.
  const worker = page.workers().find((w) => w.url().endsWith('/js/worker.js'));
  assert.ok(worker, 'the engine worker is running');
  await worker.evaluate(() => setTimeout(() => { throw new RangeError('Out of memory (simulated by the test)'); }, 0));

  // The run ends with a message, not a hang.
  await page.waitForFunction(() => document.querySelector('[data-testid=train-message]').dataset.status === 'error', null, { timeout: 60_000 });
  assert.match(await page.textContent('[data-testid=train-message]'), /engine stopped.*Out of memory.*labels are kept/);
  // One sentence on what happened, the CPU offered, then a fresh worker.
  await page.waitForFunction(() => /was restarted/.test(document.querySelector('#notice-text').textContent), null, { timeout: 120_000 });
  const notice = await page.textContent('#notice-text');
  assert.match(notice, /^The engine stopped \(.*Out of memory.*\) and was restarted; your labels are kept/);
  assert.equal(await page.isVisible('[data-testid=notice-cpu]'), true, 'the CPU backend is offered');
  assert.notEqual(page.workers().find((w) => w.url().endsWith('/js/worker.js')), worker, 'a new worker');
  assert.deepEqual(await labelsInDb(page), before, 'every label kept');
  await env.shot('recovery-notice');

  // Taking the offer: the engine comes back on the CPU and trains.
  await page.click('[data-testid=notice-cpu]');
  await page.waitForFunction(() => document.querySelector('#backend').dataset.backend === 'cpu', null, { timeout: 120_000 });
  await page.fill('[data-testid=steps]', '1');
  await page.click('[data-testid=train]');
  await page.waitForFunction(() => document.querySelector('[data-testid=train-message]').dataset.status === 'done', null, { timeout: 300_000 });
  assert.deepEqual(await labelsInDb(page), before);
}));

test('the folder picker reads only the model\'s own weights from a cluttered folder', { timeout: 300_000 }, () => withBrowser({ webgpu: false }, 'folder', async (env) => {
  const { page } = env;
  await openApp(env);
  assert.equal(await page.textContent('[data-testid=model-read]'), 'stories260K.bin, tok512.bin');
  // A real Hugging Face folder (saved by transformers) plus what training folders accumulate:
  // a second safetensors file with the same tensor names (it used to replace the weights).
  const dir = mkdtempSync(join(tmpdir(), 'kto-folder-'));
  const src = join(ROOT, 'tests/golden/family/llama_01');
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(src, f), join(dir, f));
  copyFileSync(join(src, 'model.safetensors'), join(dir, 'grads.safetensors'));
  writeFileSync(join(dir, 'README.md'), '# a fine-tune\n');
  writeFileSync(join(dir, 'trainer_state.json'), '{"global_step": 3}');
  await page.setInputFiles('#model-folder', dir);
  await page.waitForFunction(() => /safetensors/.test(document.querySelector('[data-testid=model-read]')?.textContent || ''), null, { timeout: 120_000 });
  assert.equal(await page.textContent('[data-testid=model-read]'), 'config.json, model.safetensors, tokenizer.json, tokenizer_config.json');
  assert.equal(await page.isVisible('[data-testid=model-error]'), false);
}));
