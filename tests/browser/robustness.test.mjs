// Robustness in the page: a worker that dies mid-training (as it does on out-of-memory or a lost
// GPU device) — the page says so in one sentence, starts a fresh worker, offers the CPU backend
// and keeps every label; and a cluttered model folder picked whole reads only the model's weights.
import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

test('progress tells the truth: a warm-up state, human ETAs, and a notice after reopening on an interrupted run', { timeout: 300_000 }, () => withBrowser({ webgpu: false }, 'interrupted', async (env) => {
  const { page } = env;
  await openApp(env);
  for (const r of [
    { prompt: 'Once upon a time', completion: ' there was a happy cat.', label: true },
    { prompt: 'Tom had a ball.', completion: ' It was sad and lost.', label: false },
  ]) await page.evaluate((row) => window.ktoStudio.app.addLabel(row), r);
  const before = await labelsInDb(page);
  await view(page, 'train');
  await page.fill('[data-testid=steps]', '5000');
  await page.fill('[data-testid=batch-size]', '2');
  await page.click('[data-testid=train]');
  await page.waitForFunction(() => window.ktoStudio.views.train.history.length >= 3, null, { timeout: 120_000 });
  // Before any step the page said it was warming up; then steps with a pace and an ETA in words.
  assert.deepEqual(await page.evaluate(() => window.ktoStudio.views.train.phases), ['warmup', 'training']);
  assert.match(await page.textContent('[data-testid=progress-text]'), /^step \d+\/5000 · \d+ ms\/step · (about \d+(\.\d)? (s|min|h)|a few seconds) left$/);
  await env.shot('5-train-progress');

  // Reopen mid-run: the page says a run was cut off, at which step, and what was kept.
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  assert.equal(await page.getAttribute('[data-testid=notice]', 'data-kind'), 'interrupted');
  assert.match(await page.textContent('#notice-text'), /^A training run was interrupted at step \d+ of 5000 \(stories260K.*Your labels are kept/);
  assert.deepEqual(await labelsInDb(page), before);
  // Said once: the next visit is quiet.
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  assert.doesNotMatch(await page.textContent('#notice-text'), /interrupted/);
  assert.equal(await page.getAttribute('[data-testid=notice]', 'data-kind'), null);
}));

test('from 20 labels a few are held out automatically, and each step reports them', { timeout: 300_000 }, () => withBrowser({ webgpu: false }, 'heldout', async (env) => {
  const { page } = env;
  await openApp(env);
  const words = ['happy', 'sad', 'bright', 'dark', 'kind', 'cruel'];
  for (let i = 0; i < 24; i++) {
    const row = { prompt: `Story ${i}: once upon a time`, completion: ` the cat was ${words[i % 6]}.`, label: i % 2 === 0 };
    await page.evaluate((r) => window.ktoStudio.app.addLabel(r), row);
  }
  await view(page, 'train');
  await page.waitForFunction(() => document.querySelector('[data-testid=holdout]').value === '2', null, { timeout: 30_000 });
  await page.fill('[data-testid=steps]', '4');
  await page.fill('[data-testid=batch-size]', '4');
  await page.click('[data-testid=train]');
  await page.waitForSelector('[data-testid=train-message][data-status]', { timeout: 120_000 });
  assert.match(await page.textContent('[data-testid=train-message]'), /^Done: 4 steps on 22 rows, 2 held out\./);
  const history = await page.evaluate(() => window.ktoStudio.views.train.history);
  assert.equal(history.length, 4);
  for (const m of history) assert.ok(Number.isFinite(m.heldout.loss) && Number.isFinite(m.heldout.kl), JSON.stringify(m.heldout));
  assert.ok(await page.isVisible('[data-testid=last-metrics] [data-metric="held-out loss"]'));
  await env.shot('5-train-heldout');
}));

test('a deployment without its engine (no pkg/) retries with a pause, then says so — no restart loop', { timeout: 120_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'kto-broken-'));
  cpSync(join(ROOT, 'dist'), root, { recursive: true, filter: (src) => !src.includes(`${join(ROOT, 'dist', 'pkg')}`) });
  await withBrowser({ webgpu: false, root }, 'broken-deployment', async (env) => {
    const { page } = env;
    await page.goto(`${env.origin}/`);
    await page.waitForFunction(() => /could not start/.test(document.querySelector('#notice-text').textContent), null, { timeout: 60_000 });
    assert.match(await page.textContent('#notice-text'), /^The engine could not start \(.*\)\. Reload the page; if this keeps happening, this build of the app is incomplete\./);
    assert.equal(await page.textContent('[data-testid=backend]'), 'engine failed to start');
    const starts = () => env.requests.filter((u) => u.endsWith('/js/worker.js')).length;
    const seen = starts();
    assert.ok(seen >= 2 && seen <= 4, `${seen} worker starts: the first and at most 3 retries`);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(starts(), seen, 'no further restarts');
    await env.shot('6-broken-deployment');
  });
});

test('conversational rows (TRL message lists) import and export unchanged', { timeout: 120_000 }, () => withBrowser({ webgpu: false }, 'conversational', async (env) => {
  const { page } = env;
  await openApp(env);
  await view(page, 'dataset');
  const lines = [
    { prompt: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi?' }], completion: [{ role: 'assistant', content: 'Hello.' }], label: true },
    { prompt: 'Once upon a time', completion: ' there was a cat.', label: false },
  ];
  await page.setInputFiles('[data-testid=import-jsonl]', { name: 'chat.jsonl', mimeType: 'text/plain', buffer: Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n')) });
  await page.waitForSelector('[data-testid=dataset-info]:not([hidden])');
  assert.equal(await page.textContent('[data-testid=dataset-info]'), 'Added 2 rows from chat.jsonl.');
  const [file] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-jsonl]')]);
  const out = join(mkdtempSync(join(tmpdir(), 'kto-chat-')), 'out.jsonl');
  await file.saveAs(out);
  assert.deepEqual(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l)), lines);
}));
