// End-to-end tests of the app in real headless Chromium: WebGPU (SwiftShader) and the CPU
// fallback, real IndexedDB, the real wasm engine and the built-in stories260K.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import http from 'node:http';
import { serve } from '../../scripts/serve.mjs';
import { labelsInDb, openApp, view, withBrowser, OUT, ROOT } from './harness.mjs';

const KTO = process.env.KTO_BIN || join(process.env.HOME, '.cache/kto-studio/target-native/release/kto');
const PROMPTS = ['Once upon a time, there was a little girl named Lily.', 'Tom had a big red ball.'];

async function generateGroup(page, prompt, n) {
  await view(page, 'generate');
  const groupsBefore = await page.locator('[data-testid=sample-group][data-done=true]').count();
  await page.fill('[data-testid=prompt]', prompt);
  await page.fill('[data-testid=n-samples]', String(n));
  await page.fill('[data-testid=max-tokens]', '40');
  await page.click('[data-testid=generate]');
  await page.waitForFunction((k) => document.querySelectorAll('[data-testid=sample-group][data-done=true]').length === k, groupsBefore + 1, { timeout: 300_000 });
  return page.locator('[data-testid=sample-group]').first();
}

async function waitCount(page, n) {
  await page.waitForFunction((k) => document.querySelector('[data-testid=count-badge]').textContent === `(${k})`, n, { timeout: 60_000 });
}

async function train(page, { steps, batch, lr, shuffle = false }) {
  await view(page, 'train');
  await page.fill('[data-testid=steps]', String(steps));
  await page.fill('[data-testid=batch-size]', String(batch));
  await page.fill('[data-testid=lr]', String(lr));
  await page.setChecked('[data-testid=shuffle]', shuffle);
  await page.click('[data-testid=train]');
  await page.waitForSelector('[data-testid=train-message][data-status]', { timeout: 600_000 });
  const status = await page.getAttribute('[data-testid=train-message]', 'data-status');
  assert.equal(status, 'done', await page.textContent('[data-testid=train-message]'));
  return page.evaluate(() => window.ktoStudio.views.train.history);
}

function assertFiniteMetrics(history) {
  for (const m of history) {
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === 'number') assert.ok(Number.isFinite(v), `${k} = ${v} at step ${m.step}`);
    }
    for (const k of ['loss', 'kl', 'grad_norm']) assert.equal(typeof m[k], 'number', k);
  }
}

function assertOnlyOwnAssets(env) {
  assert.ok(env.requests.length > 0);
  for (const url of env.requests) {
    // The thread pool's workers start from a blob: URL of the app's own script (no network).
    if (url.startsWith(`blob:${env.origin}/`)) continue;
    assert.ok(url.startsWith(`${env.origin}/`), `request to ${url}`);
    let path = new URL(url).pathname;
    if (path.endsWith('/')) path += 'index.html';
    assert.ok(existsSync(join(ROOT, 'dist', decodeURIComponent(path))), `request for ${path}, which is not one of the app's files`);
  }
}

test('the wasm module calls its static constructors once (no per-export command_export stubs)', () => {
  const wasm = readFileSync(join(ROOT, 'dist/pkg/kto_studio_bg.wasm'));
  assert.ok(wasm.length > 1_000_000);
  assert.equal(wasm.includes(Buffer.from('command_export')), false);
  assert.equal(wasm.includes(Buffer.from('__wbindgen_start')), true, 'a start function (which runs the constructors) is exported');
  const threaded = readFileSync(join(ROOT, 'dist/pkg-threads/kto_studio_bg.wasm'));
  assert.equal(threaded.includes(Buffer.from('command_export')), false, 'the threaded build neither');
});

// The threaded build multiplies with relaxed SIMD's FMA (src/model/madd.rs), so a browser without
// relaxed SIMD cannot compile it and the worker must load pkg/ there. Node 20's V8 runs relaxed
// SIMD only behind a flag (later versions always): with and without it, the worker's probe must say
// exactly whether the threaded module validates, and the single-threaded one must validate either way.
test('the threaded build needs relaxed SIMD, and the worker\'s probe (features.js) says where it compiles', () => {
  const script = `import { relaxedSimd } from ${JSON.stringify(pathToFileURL(join(ROOT, 'www/js/features.js')).href)};
    import { readFileSync } from 'node:fs';
    const valid = (f) => WebAssembly.validate(readFileSync(f));
    console.log(JSON.stringify({ probe: relaxedSimd, threads: valid(process.argv[1]), single: valid(process.argv[2]) }));`;
  const seen = new Set();
  for (const flags of [[], ['--experimental-wasm-relaxed-simd']]) {
    const r = JSON.parse(execFileSync(process.execPath, [...flags, '--input-type=module', '-e', script,
      join(ROOT, 'dist/pkg-threads/kto_studio_bg.wasm'), join(ROOT, 'dist/pkg/kto_studio_bg.wasm')], { encoding: 'utf8' }));
    assert.equal(r.probe, r.threads, `node ${flags.join(' ')}: the probe says ${r.probe}, the threaded build validates: ${r.threads}`);
    assert.equal(r.single, true, 'the single-threaded build needs no relaxed SIMD');
    seen.add(r.probe);
  }
  assert.ok(seen.has(true), 'relaxed SIMD was available in one of the runs');
});

test('the app server: its files with COOP/COEP (or without, when asked), 404 outside dist/, 400 for a malformed path', async (t) => {
  mkdirSync(join(ROOT, 'dist-sibling'), { recursive: true });
  writeFileSync(join(ROOT, 'dist-sibling/x.txt'), 'not an app file');
  t.after(() => rmSync(join(ROOT, 'dist-sibling'), { recursive: true, force: true }));
  for (const isolated of [true, false]) {
    const server = await serve(join(ROOT, 'dist'), 0, { isolated });
    const get = (path) => new Promise((ok, fail) => http.get({ host: '127.0.0.1', port: server.address().port, path }, (r) => { r.resume(); ok(r); }).on('error', fail));
    try {
      for (const path of ['/', '//', '/js/features.js']) {
        const r = await get(path);
        assert.equal(r.statusCode, 200, path);
        assert.equal(r.headers['cross-origin-opener-policy'], isolated ? 'same-origin' : undefined, path);
        assert.equal(r.headers['cross-origin-embedder-policy'], isolated ? 'require-corp' : undefined, path);
      }
      // A sibling folder whose name starts with dist's is outside it too.
      for (const [path, status] of [['/../package.json', 404], ['/%2e%2e/package.json', 404], ['/../dist-sibling/x.txt', 404],
        ['/nope.js', 404], ['/%E0%A4%A', 400]]) {
        assert.equal((await get(path)).statusCode, status, path);
      }
    } finally {
      server.close();
    }
  }
});

test('WebGPU: label → reload → train → compare; JSONL; native parity; bad files; no network', { timeout: 1_500_000 }, () => withBrowser({ webgpu: true }, 'webgpu', async (env) => {
    const { page } = env;
    // Asked for explicitly: "auto" would take the CPU on this software adapter (tested below).
    await openApp(env, '?backend=webgpu');
    // The engine itself runs on WebGPU (SwiftShader here), not on the CPU fallback.
    const badge = page.locator('[data-testid=backend]');
    assert.equal(await badge.getAttribute('data-backend'), 'wgpu', await badge.textContent());
    const adapter = JSON.parse(await badge.getAttribute('data-adapter'));
    assert.match(`${adapter.description} ${adapter.architecture}`, /swiftshader/i);
    assert.equal(await page.textContent('[data-testid=model-name]'), 'stories260K');
    assert.equal(await page.textContent('[data-testid=model-params]'), (260032).toLocaleString('en-US'));
    await env.shot('1-model');

    // Generate 4 samples for each of 2 prompts; label 3 up and 3 down (keyboard for the first).
    const labelled = [];
    const plan = [[true, false, true, null], [false, true, false, null]];
    for (let p = 0; p < 2; p++) {
      const group = await generateGroup(page, PROMPTS[p], 4);
      const cards = group.locator('[data-testid=sample]');
      assert.equal(await cards.count(), 4);
      for (let i = 0; i < 4; i++) {
        const text = await cards.nth(i).locator('[data-testid=sample-text]').inputValue();
        assert.ok(text.length > 0, 'samples stream text');
        const want = plan[p][i];
        if (p === 0) {
          await cards.nth(i).focus();
          await page.keyboard.press({ true: 'u', false: 'd', null: 's' }[String(want)]);
        } else {
          await cards.nth(i).locator(`[data-testid=${{ true: 'label-up', false: 'label-down', null: 'label-skip' }[String(want)]}]`).click();
        }
        await page.waitForFunction((c) => c.textContent !== '', await cards.nth(i).locator('[data-testid=sample-state]').elementHandle());
        if (want !== null) labelled.push({ prompt: PROMPTS[p], completion: text, label: want });
      }
    }
    await waitCount(page, 6);
    await env.shot('2-generate-label');

    // Reload: all 6 labels are still there (IndexedDB).
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
    await view(page, 'dataset');
    await waitCount(page, 6);
    assert.deepEqual(await labelsInDb(page), labelled);
    assert.equal(await page.getAttribute('[data-testid=class-counts]', 'data-desirable'), '3');
    assert.equal(await page.getAttribute('[data-testid=class-counts]', 'data-undesirable'), '3');
    assert.equal(await page.locator('[data-testid=row]').count(), 6);
    await env.shot('3-dataset');

    // Export JSONL equals the labelled data.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-jsonl]')]);
    const exportedPath = join(OUT, 'exported.jsonl');
    await download.saveAs(exportedPath);
    const exported = readFileSync(exportedPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(exported, labelled);

    // Train 10 steps on WebGPU: finite metrics, loss falls, margins rise.
    const history = await train(page, { steps: 10, batch: 6, lr: 0.002 });
    assert.equal(history.length, 10);
    assertFiniteMetrics(history);
    assert.ok(history[9].loss < history[0].loss, `loss ${history[0].loss} -> ${history[9].loss}`);
    assert.ok(history[9]['rewards/margins'] > history[0]['rewards/margins'], 'margins rise');
    await env.shot('4-train');
    const msPerStep = history.slice(2).map((m, i) => m.elapsedMs - history[i + 1].elapsedMs).sort((a, b) => a - b);
    writeFileSync(join(OUT, 'browser-train-webgpu.json'), JSON.stringify({ msPerStepMedian: msPerStep[msPerStep.length >> 1], history }, null, 1));

    // Same engine, two places: the native CLI on the same data and settings gives the same metrics.
    const cliOut = join(OUT, 'cli-metrics.jsonl');
    execFileSync(KTO, ['train', '--backend', 'cpu', '--data', exportedPath, '--steps', '3', '--batch-size', '6', '--lr', '0.002',
      '--max-length', '256', '--max-grad-norm', '1', '--no-shuffle', '--metrics-out', cliOut], { stdio: ['ignore', 'ignore', 'inherit'] });
    const cli = readFileSync(cliOut, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (let s = 0; s < 3; s++) {
      for (const [k, v] of Object.entries(cli[s])) {
        const b = history[s][k];
        // Summed log-probs are ~30 nats: rounding of another summation order (WebGPU vs burn-flex) shows at 1e-5 relative.
        assert.ok(Math.abs(b - v) <= 1e-4 + 1e-5 * Math.abs(v), `step ${s + 1} ${k}: browser ${b} vs native ${v}`);
      }
    }

    // Compare: base vs trained on the same prompts and seeds differ.
    await view(page, 'compare');
    await page.click('[data-testid=compare]');
    await page.waitForSelector('[data-testid=compare-rows][data-done=true]', { timeout: 300_000 });
    const base = await page.locator('[data-testid=compare-base]').allTextContents();
    const tuned = await page.locator('[data-testid=compare-trained]').allTextContents();
    assert.equal(base.length, 2);
    assert.ok(base.some((b, i) => b !== tuned[i]), 'the trained model writes something else');
    await env.shot('5-compare');

    // What training changed, token by token: the page's per-token log-probs are the native engine's
    // for the same trained weights (downloaded as one file) and the same text.
    const text = 'Once upon a time, there was a little girl named Lily. She was very sad.';
    await page.fill('[data-testid=diff-text]', text);
    await page.click('[data-testid=diff-run]');
    await page.waitForSelector('[data-testid=diff-trained][data-done=true]', { timeout: 120_000 });
    const shown = await page.$$eval('[data-testid=diff-trained] .tok', (ts) => ts.map((t) => ({ text: t.textContent, base: Number(t.dataset.base), trained: Number(t.dataset.trained), diff: Number(t.dataset.diff) })));
    await view(page, 'train');
    const [weightsFile] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=download-weights]')]);
    await view(page, 'compare');
    const trainedPath = join(OUT, weightsFile.suggestedFilename());
    await weightsFile.saveAs(trainedPath);
    // Kept in the library: saved in this browser, listed with its size, restored from there.
    await view(page, 'train');
    await page.click('[data-testid=save-weights]');
    await view(page, 'model');
    await page.waitForSelector('[data-testid=library-row][data-kind=weights]');
    const shownSize = await page.textContent('[data-testid=library-row][data-kind=weights] [data-testid=library-size]');
    const [, n, unit] = /^([\d.]+) (kB|MB)$/.exec(shownSize);
    const bytes = Number(n) * (unit === 'kB' ? 1e3 : 1e6);
    assert.ok(Math.abs(bytes - statSync(trainedPath).size) <= 0.06 * bytes, `library size ${shownSize} vs file ${statSync(trainedPath).size}`);
    await page.click('[data-testid=library-row][data-kind=weights] [data-testid=library-open]');
    await page.waitForFunction(() => /restored as the trained model/.test(document.querySelector('[data-testid=hub-status]').textContent));
    await view(page, 'compare');
    const nativeDiff = JSON.parse(execFileSync(KTO, ['diff', '--trained', trainedPath, '--text', text], { encoding: 'utf8' }));
    assert.equal(shown.length, nativeDiff.length);
    assert.ok(shown.some((t) => Math.abs(t.diff) > 0.01), 'training changed some token');
    shown.forEach((t, i) => {
      const n = nativeDiff[i];
      assert.equal(t.text, n.text);
      for (const [k, v] of [['base', n.base], ['trained', n.trained], ['diff', n.trained - n.base]]) {
        assert.ok(Math.abs(t[k] - v) <= 1e-4, `token ${i} (${n.text}) ${k}: page ${t[k]} vs native ${v}`);
      }
    });
    await env.shot('5-compare-token-diff');

    // Importing the export into an empty store restores it.
    await view(page, 'dataset');
    await page.click('[data-testid=clear-dataset]');
    await waitCount(page, 0);
    await page.setInputFiles('[data-testid=import-jsonl]', exportedPath);
    await waitCount(page, 6);
    assert.deepEqual(await labelsInDb(page), labelled);

    // Bad files: clear errors, the worker keeps working, no label is lost.
    const model = readFileSync(join(ROOT, 'dist/models/stories260K/stories260K.bin'));
    const tok = readFileSync(join(ROOT, 'dist/models/stories260K/tok512.bin'));
    await view(page, 'model');
    const blob = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 2654435761) >>> 24));
    await page.setInputFiles('[data-testid=model-files]', [
      { name: 'random.bin', mimeType: 'application/octet-stream', buffer: blob },
      { name: 'tok512.bin', mimeType: 'application/octet-stream', buffer: tok }]);
    await page.waitForSelector('[data-testid=model-error]:not([hidden])');
    assert.match(await page.textContent('[data-testid=model-error]'), /llama2\.c/);
    await env.shot('6-bad-model');
    await page.setInputFiles('[data-testid=model-files]', [
      { name: 'stories260K.bin', mimeType: 'application/octet-stream', buffer: model },
      { name: 'tok512.bin', mimeType: 'application/octet-stream', buffer: tok.subarray(0, 3000) }]);
    await page.waitForFunction(() => /truncated/.test(document.querySelector('[data-testid=model-error]').textContent));
    await view(page, 'dataset');
    await page.setInputFiles('[data-testid=import-jsonl]', { name: 'bad.jsonl', mimeType: 'text/plain',
      buffer: Buffer.from('{"prompt": "a", "completion": "b", "label": true}\n{"prompt": "a", "completion": 3}\n\n{"prompt": "p", "chosen": "c", "rejected": "r"}\nnot json\n') });
    await page.waitForSelector('[data-testid=dataset-error]:not([hidden])');
    // Every bad line is listed (blank lines are fine), and nothing was added.
    const listed = await page.textContent('[data-testid=dataset-error]');
    assert.match(listed, /nothing was added\. Fix these 2 lines and import again:\nJSONL line 2: field "completion" must be a string, got 3\nJSONL line 5: not valid JSON/);
    await env.shot('7-bad-jsonl');
    assert.deepEqual(await labelsInDb(page), labelled, 'no label lost');
    // A good import says what it added; a blank file says it has nothing.
    await page.setInputFiles('[data-testid=import-jsonl]', { name: 'more.jsonl', mimeType: 'text/plain',
      buffer: Buffer.from('{"prompt": "a", "completion": "b", "label": true}\n{"prompt": "p", "chosen": "c", "rejected": "r"}\n') });
    await page.waitForSelector('[data-testid=dataset-info]:not([hidden])');
    assert.equal(await page.textContent('[data-testid=dataset-info]'), 'Added 3 rows from more.jsonl (1 paired row split into 2).');
    await waitCount(page, labelled.length + 3);
    await page.setInputFiles('[data-testid=import-jsonl]', { name: 'blank.jsonl', mimeType: 'text/plain', buffer: Buffer.from('\n  \n\n') });
    await page.waitForFunction(() => /blank\.jsonl has no rows \(it is empty or only blank lines\)/.test(document.querySelector('[data-testid=dataset-error]').textContent));
    await waitCount(page, labelled.length + 3);
    await generateGroup(page, 'The dog ran', 1);

    // No request ever left 127.0.0.1, and every request was for one of the app's own files.
    assertOnlyOwnAssets(env);
}));

test('threads: a cross-origin isolated page runs the threaded CPU engine on a pool of Web Workers', { timeout: 300_000 }, () => withBrowser({ webgpu: false }, 'threads', async (env) => {
  const { page } = env;
  await openApp(env);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'the app server sends COOP/COEP');
  const badge = page.locator('[data-testid=backend]');
  assert.equal(await badge.getAttribute('data-backend'), 'cpu', await badge.textContent());
  // Every thread of the engine's rayon pool answered a broadcast: that many Web Workers run the wasm.
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  assert.equal(Number(await badge.getAttribute('data-threads')), Math.min(cores, 16));
  assert.match(await badge.textContent(), new RegExp(`CPU \\(wasm, ${Math.min(cores, 16)} threads?\\)`));
  // Its parallel loop (helpers kept awake between loops: every task of 224 loops runs once, or the
  // call fails), then its products (relaxed-SIMD kernel) against burn's matmul (gemm's SIMD128
  // kernel) in the same module, on random shapes and layouts, forward and backward, and its
  // attention (products that skip hidden keys) against burn's composed ops on random masks.
  const { compared } = await page.evaluate(() => window.ktoStudio.app.engine.call('checkProducts', { cases: 28 }));
  assert.ok(compared > 100_000, `${compared} values compared`);
  // The threaded build trains (its numbers are held to the native engine's by the mood demo test).
  const r = await page.evaluate(() => window.ktoStudio.app.engine.call('bench', { steps: 2, genTokens: 8 }));
  assert.ok(r.kto_step_ms > 0 && r.generate_tokens === 8, JSON.stringify(r));
  // The tab's clock times the step's products and fused kernels (performance.now on the engine's
  // worker): parts of the step.
  assert.ok(r.products_ms > 0 && r.kernels_ms > 0 && r.products_ms + r.kernels_ms < r.kto_step_ms, JSON.stringify(r));
  assertOnlyOwnAssets(env);
}));

// Served without COOP/COEP (any static server): no shared memory, so the single-threaded build.
test('CPU fallback: without WebGPU the app runs the engine on the CPU (wasm), single-threaded when not isolated', { timeout: 900_000 }, () => withBrowser({ webgpu: false, isolated: false }, 'cpu', async (env) => {
    const { page } = env;
    await openApp(env);
    const badge = page.locator('[data-testid=backend]');
    assert.equal(await badge.getAttribute('data-backend'), 'cpu', await badge.textContent());
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
    assert.equal(await badge.getAttribute('data-threads'), '1');
    assert.match(await badge.getAttribute('title'), /1 thread: the page is not cross-origin isolated/);
    assert.match(await page.textContent('[data-testid=notice]'), /CPU/);
    const group = await generateGroup(page, PROMPTS[0], 2);
    await group.locator('[data-testid=label-up]').first().click();
    await group.locator('[data-testid=label-down]').nth(1).click();
    await waitCount(page, 2);
    // A labelled card shows its label and can be relabelled in place (the stored row changes, no new row).
    const first = group.locator('[data-testid=sample]').first();
    assert.equal(await first.getAttribute('data-label'), 'true');
    assert.match(await first.locator('[data-testid=label-up]').getAttribute('class'), /chosen/);
    await first.locator('[data-testid=label-down]').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=sample]').dataset.label === 'false');
    assert.match(await first.locator('[data-testid=sample-state]').textContent(), /undesirable \(changed\)/);
    await waitCount(page, 2);
    assert.deepEqual((await labelsInDb(page)).map((r) => r.label).sort(), [false, false]);
    await first.locator('[data-testid=label-up]').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=sample]').dataset.label === 'true');
    assert.deepEqual((await labelsInDb(page)).map((r) => r.label).sort(), [false, true]);
    const history = await train(page, { steps: 3, batch: 2, lr: 0.002 });
    assert.equal(history.length, 3);
    assertFiniteMetrics(history);
    await env.shot('8-cpu-train');

    // A run that cannot fit is refused before it starts, with the reason.
    await page.fill('[data-testid=batch-size]', '100000');
    await page.dispatchEvent('[data-testid=batch-size]', 'change');
    await page.waitForFunction(() => document.querySelector('[data-testid=memory-estimate]').dataset.fits === 'false', null, { timeout: 60_000 });
    assert.match(await page.textContent('[data-testid=memory-estimate]'), /Estimated peak memory: [\d,.]+ MiB.*Too large/);
    await page.click('[data-testid=train]');
    await page.waitForFunction(() => document.querySelector('[data-testid=train-message]').dataset.status === 'error', null, { timeout: 60_000 });
    assert.match(await page.textContent('[data-testid=train-message]'), /needs about [\d,]+ MiB.*more than [\d,]+ MiB available.*LoRA/);

    // LoRA on the built-in model: only adapters train; the PEFT adapter downloads and loads back.
    await page.selectOption('[data-testid=method]', 'lora');
    await page.fill('[data-testid=lora-rank]', '4');
    const lora = await train(page, { steps: 2, batch: 2, lr: 0.01 });
    assertFiniteMetrics(lora);
    // Policy == reference at step 0, up to rounding (autodiff and plain forwards sum in different orders).
    assert.ok(Math.abs(lora[0].loss - 0.5) < 1e-6, `step-0 loss ${lora[0].loss}`);
    const saved = [];
    page.on('download', (d) => saved.push(d));
    await page.click('[data-testid=download-adapter]');
    await page.waitForFunction(() => /Downloaded/.test(document.querySelector('[data-testid=train-message]').textContent), null, { timeout: 60_000 });
    await page.waitForTimeout(500);
    const paths = [];
    for (const d of saved) { const p = join(OUT, d.suggestedFilename()); await d.saveAs(p); paths.push(p); }
    assert.deepEqual(paths.map((p) => p.replace(/^.*-kto-adapter-/, '')).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(readFileSync(paths.find((p) => p.endsWith('.json')), 'utf8'));
    assert.equal(config.peft_type, 'LORA');
    assert.equal(config.r, 4);
    await page.setInputFiles('[data-testid=adapter-files]', paths);
    await page.waitForFunction(() => /Loaded a rank-4 adapter/.test(document.querySelector('[data-testid=train-message]').textContent), null, { timeout: 60_000 });
    await page.selectOption('[data-testid=method]', 'full');
    await page.fill('[data-testid=batch-size]', '2');

    // Pause holds the run, resume continues it, cancel ends it between steps.
    await page.fill('[data-testid=steps]', '200');
    await page.click('[data-testid=train]');
    await page.waitForFunction(() => window.ktoStudio.views.train.history.length >= 2, null, { timeout: 60_000 });
    await page.click('[data-testid=pause]');
    await page.waitForTimeout(500); // a step already in flight may still land
    const paused = await page.evaluate(() => window.ktoStudio.views.train.history.length);
    await page.waitForTimeout(1500);
    assert.equal(await page.evaluate(() => window.ktoStudio.views.train.history.length), paused, 'no step while paused');
    await page.click('[data-testid=pause]'); // resume
    await page.waitForFunction((n) => window.ktoStudio.views.train.history.length > n, paused, { timeout: 60_000 });
    await page.click('[data-testid=cancel]');
    await page.waitForFunction(() => document.querySelector('[data-testid=train-message]').dataset.status === 'cancelled', null, { timeout: 60_000 });
    assert.ok((await page.evaluate(() => window.ktoStudio.views.train.history.length)) < 200);
    assertOnlyOwnAssets(env);
}));

test('auto backend: a software WebGPU adapter is detected and the faster CPU backend chosen, with the reason', { timeout: 300_000 }, () => withBrowser({ webgpu: true }, 'auto-backend', async (env) => {
  const { page } = env;
  await openApp(env);
  const badge = page.locator('[data-testid=backend]');
  // WebGPU is there (SwiftShader), but "auto" runs the engine on the CPU and says why.
  assert.equal(await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter())), true, 'this browser has a WebGPU adapter');
  assert.equal(await badge.getAttribute('data-backend'), 'cpu', await badge.textContent());
  assert.equal(await badge.getAttribute('data-software'), 'true');
  assert.match(await badge.textContent(), /CPU \(wasm, \d+ threads?\) · auto/);
  assert.match(await badge.getAttribute('title'), /Chosen automatically: WebGPU is available but it is SwiftShader, a software renderer: the CPU backend is faster here/);
  assert.match(await page.textContent('[data-testid=backend-why]'), /^auto chose the CPU: WebGPU is available but it is SwiftShader/);
  // The CPU backend is the faster one here: the engine's own benchmark on both, same page session.
  const cpu = await page.evaluate(() => window.ktoStudio.app.engine.call('bench', { steps: 2, genTokens: 4 }));
  // The user can still switch: WebGPU is then used, and labelled as a software adapter.
  await page.selectOption('[data-testid=backend-choice]', 'webgpu');
  await page.waitForFunction(() => document.querySelector('[data-testid=backend]').dataset.backend === 'wgpu', null, { timeout: 120_000 });
  assert.match(await badge.textContent(), /WebGPU · .*\(software adapter\)/);
  assert.match(await page.textContent('[data-testid=backend-why]'), /software renderer: training here is 10–30× slower than on the CPU backend/);
  const gpu = await page.evaluate(() => window.ktoStudio.app.engine.call('bench', { steps: 1, genTokens: 4 }));
  assert.ok(cpu.kto_step_ms < gpu.kto_step_ms, `CPU ${cpu.kto_step_ms} ms/step vs WebGPU ${gpu.kto_step_ms} ms/step`);
}));
