// Slow suite (scripts/test-slow.sh): SmolLM2-135M-Instruct (GGUF Q4_1, fetched from PyPI by
// scripts/fetch_smollm2.sh) in real headless Chromium on WebGPU (SwiftShader): load from a picked
// file, chat-mode greedy answer, one LoRA KTO step with finite metrics, PEFT adapter download.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openApp, view, withBrowser, OUT, ROOT } from './harness.mjs';

const GGUF = execFileSync(join(ROOT, 'scripts/fetch_smollm2.sh'), { encoding: 'utf8' }).trim();

test('SmolLM2-135M-Instruct on WebGPU: chat answer, one LoRA KTO step, PEFT export', { timeout: 2_400_000 }, () => withBrowser({ webgpu: true }, 'smollm2', async (env) => {
  const { page } = env;
  await openApp(env, '?backend=webgpu');
  assert.equal(await page.getAttribute('#backend', 'data-backend'), 'wgpu');
  await page.setInputFiles('[data-testid=model-files]', GGUF);
  await page.waitForFunction(() => /Smollm2/i.test(document.querySelector('[data-testid=model-name]')?.textContent || ''), null, { timeout: 600_000 });
  assert.equal(await page.textContent('[data-testid=model-params]'), (134515008).toLocaleString('en-US'));
  assert.equal(await page.isChecked('[data-testid=chat-mode]'), true, 'an instruct model opens in chat mode');

  // Greedy chat answer, generated on WebGPU.
  await view(page, 'generate');
  await page.fill('[data-testid=prompt]', 'What is the capital of France?');
  await page.fill('[data-testid=n-samples]', '1');
  await page.fill('[data-testid=temperature]', '0');
  await page.fill('[data-testid=max-tokens]', '12');
  const t0 = Date.now();
  await page.click('[data-testid=generate]');
  await page.waitForSelector('[data-testid=sample-group][data-done=true]', { timeout: 900_000 });
  const answer = await page.locator('[data-testid=sample-group] textarea').first().inputValue();
  const generateMs = Date.now() - t0;
  assert.match(answer, /Paris/, `answer: ${answer}`);
  await env.shot('smollm2-1-answer');

  // Labels (plain prompts; chat mode wraps them in the template for training).
  await view(page, 'dataset');
  const rows = [
    { prompt: 'What is the capital of France?', completion: answer, label: true },
    { prompt: 'What is the capital of France?', completion: 'I do not know.', label: false },
  ];
  await page.setInputFiles('[data-testid=import-jsonl]', { name: 'chat.jsonl', mimeType: 'text/plain', buffer: Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n')) });
  await page.waitForFunction(() => document.querySelector('[data-testid=count-badge]').textContent === '(2)', null, { timeout: 60_000 });

  // One LoRA step: LoRA is preselected for a model this size; the estimate is shown and fits.
  await view(page, 'train');
  assert.equal(await page.inputValue('[data-testid=method]'), 'lora');
  await page.fill('[data-testid=steps]', '1');
  await page.fill('[data-testid=batch-size]', '2');
  await page.fill('[data-testid=max-length]', '48');
  await page.dispatchEvent('[data-testid=max-length]', 'change');
  await page.waitForFunction(() => { const e = document.querySelector('[data-testid=memory-estimate]').dataset; return e.batch === '2' && e.fits === 'true'; }, null, { timeout: 120_000 });
  const estimate = await page.textContent('[data-testid=memory-estimate]');
  const t1 = Date.now();
  await page.click('[data-testid=train]');
  await page.waitForSelector('[data-testid=train-message][data-status]', { timeout: 1_800_000 });
  const stepMs = Date.now() - t1;
  assert.equal(await page.getAttribute('[data-testid=train-message]', 'data-status'), 'done', await page.textContent('[data-testid=train-message]'));
  const history = await page.evaluate(() => window.ktoStudio.views.train.history);
  assert.equal(history.length, 1);
  assert.ok(Math.abs(history[0].loss - 0.5) < 1e-6, `step-0 loss ${history[0].loss}`); // 0.5 up to rounding
  for (const k of ['loss', 'kl', 'grad_norm', 'logps/chosen', 'logps/rejected']) assert.ok(Number.isFinite(history[0][k]), `${k} = ${history[0][k]}`);
  assert.ok(history[0].grad_norm > 0);
  await env.shot('smollm2-2-lora-step');

  // The PEFT adapter downloads as its two files.
  const downloads = [];
  page.on('download', (d) => downloads.push(d.suggestedFilename()));
  await page.click('[data-testid=download-adapter]');
  await page.waitForFunction(() => /Downloaded/.test(document.querySelector('[data-testid=train-message]').textContent), null, { timeout: 300_000 });
  await page.waitForTimeout(500);
  assert.deepEqual(downloads.map((n) => n.replace(/^.*-kto-adapter-/, '')).sort(), ['adapter_config.json', 'adapter_model.safetensors']);

  const stats = await page.evaluate(() => window.ktoStudio.app.engine.call('stats'));
  const record = { answer, generateMs, stepMs, estimate, wasmMemoryBytes: stats.wasmMemory, metrics: history[0] };
  writeFileSync(join(OUT, 'smollm2-browser.json'), JSON.stringify(record, null, 1));
  console.log(JSON.stringify(record));
}));
