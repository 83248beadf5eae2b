// Issue 5 in the browser: the guided "teach a mood" demo on the backend the page picks by itself (the CPU on this
// software adapter: issue 10), the explainer's curves, and
// auto-labelling with the sentiment judge.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openApp, view, withBrowser, OUT, ROOT } from './harness.mjs';

const KTO = process.env.KTO_BIN || join(process.env.HOME, '.cache/kto-studio/target-native/release/kto');
const sig = (x) => 1 / (1 + Math.exp(-x));

test('guided demo (quick) on the backend "auto" picks shows before/after numbers from real held-out evaluation; explainer; auto-label', { timeout: 1_800_000 }, () =>
  withBrowser({ webgpu: true }, 'demo', async (env) => {
    const { page } = env;
    await openApp(env);
    // SwiftShader is a software adapter: "auto" runs the engine on the CPU and says why.
    assert.equal(await page.getAttribute('[data-testid=backend]', 'data-backend'), 'cpu');
    assert.equal(await page.getAttribute('[data-testid=backend]', 'data-software'), 'true');
    assert.match(await page.getAttribute('[data-testid=backend]', 'title'), /SwiftShader, a software renderer: the CPU backend is faster/);

    await view(page, 'demo');
    // Before it starts, the demo says how long it will take here, from a measured step.
    await page.waitForFunction(() => /^Estimated time on this backend: (about|a few)/.test(document.querySelector('[data-testid=demo-estimate]').textContent), null, { timeout: 300_000 });
    assert.ok(Number(await page.getAttribute('[data-testid=demo-estimate]', 'data-seconds')) > 0);
    await page.selectOption('[data-testid=demo-size]', 'quick');
    await page.selectOption('[data-testid=demo-mood]', 'sadder');
    await page.click('[data-testid=demo-run]');
    await page.waitForFunction(() => document.querySelector('[data-testid=demo-results]').dataset.done === 'true'
      || !document.querySelector('[data-testid=demo-error]').hidden, null, { timeout: 1_500_000 });
    assert.equal(await page.isHidden('[data-testid=demo-error]'), true, await page.textContent('[data-testid=demo-error]'));
    await env.shot('9-demo');
    const value = async (metric, side) => Number(await page.getAttribute(`[data-metric=${metric}] [data-side=${side}]`, 'data-value'));
    const metrics = ['target_rate', 'positive_rate', 'negative_rate', 'mean_score', 'mean_tokens', 'nll_per_token'];
    for (const m of metrics) for (const side of ['base', 'trained']) assert.ok(Number.isFinite(await value(m, side)), `${m} ${side}`);
    // The numbers change with the trained weights...
    assert.notEqual(await value('nll_per_token', 'trained'), await value('nll_per_token', 'base'));
    assert.ok(metrics.filter((m) => m !== 'nll_per_token').length > 0);
    // ...and the base model's held-out NLL is the native engine's on the same stories.
    const sets = JSON.parse(readFileSync(join(ROOT, 'dist/data/prompts.json'), 'utf8'));
    const storiesFile = join(OUT, 'heldout-4.txt');
    writeFileSync(storiesFile, sets.heldout_stories.slice(0, 4).join('\n<|endoftext|>\n'));
    const native = JSON.parse(execFileSync(KTO, ['eval', '--stories', storiesFile, '--max-stories', '4'], { encoding: 'utf8' }));
    assert.ok(Math.abs(native.nll_per_token - (await value('nll_per_token', 'base'))) <= 1e-4,
      `native ${native.nll_per_token} vs page ${await value('nll_per_token', 'base')}`);
    assert.ok((await page.locator('[data-testid=demo-samples] tr').count()) === 4);

    // One run driver: the page's recipe is the engine's (`kto mood`), with the same auto-labelled
    // rows and the same metrics at every step (to the browser-vs-native rounding of the wasm build).
    const runDir = join(OUT, 'mood-quick-native');
    execFileSync(KTO, ['mood', '--size', 'quick', '--direction', 'sadder', '--run-out', runDir], { stdio: ['ignore', 'ignore', 'inherit'] });
    const { steps, labelled: pageRun } = await page.evaluate(() => window.ktoStudio.views.demo);
    const nativeRows = readFileSync(join(runDir, 'rows.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(pageRun.rows, nativeRows, 'the page and kto mood label the same samples');
    const nativeSteps = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(steps.length, nativeSteps.length);
    nativeSteps.forEach((n, s) => {
      for (const [k, v] of Object.entries(n)) {
        assert.ok(Math.abs(steps[s][k] - v) <= 1e-4 + 1e-5 * Math.abs(v), `step ${s + 1} ${k}: page ${steps[s][k]} vs native ${v}`);
      }
    });

    // The explainer's curves are the engine's loss function on the same inputs.
    await view(page, 'explainer');
    for (const [loss, beta, z, wd, wu] of [['kto', '0.3', '4', '1.5', '0.7'], ['apo_zero_unpaired', '0.3', '4', '1.5', '0.7']]) {
      await page.selectOption('[data-testid=ex-loss]', loss);
      await page.fill('[data-testid=ex-wd]', wd);
      await page.fill('[data-testid=ex-wu]', wu);
      await page.$eval('[data-testid=ex-beta]', (e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }, beta);
      await page.$eval('[data-testid=ex-z]', (e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }, z);
      await page.waitForFunction(([l, b, zz]) => {
        const s = window.ktoStudio.views.explainer.state.last;
        return s && s.loss.loss_type === l && s.loss.beta === Number(b) && s.z === Number(zz) && s.loss.undesirable_weight === 0.7;
      }, [loss, beta, z]);
      const curve = await page.evaluate(() => window.ktoStudio.views.explainer.state.last);
      const zEff = loss === 'kto' ? 4 : 0;
      assert.equal(curve.r.length, 241);
      curve.r.forEach((r, i) => {
        assert.ok(Math.abs(curve.desirable[i] - 1.5 * (1 - sig(0.3 * (r - zEff)))) <= 1e-6, `desirable at r=${r}`);
        assert.ok(Math.abs(curve.undesirable[i] - 0.7 * (1 - sig(0.3 * (zEff - r)))) <= 1e-6, `undesirable at r=${r}`);
      });
      await env.shot(`10-explainer-${loss}`);
    }

    // The last training batch is drawn as dots, inside axes that fit it; hovering one names its row.
    const ex = await page.evaluate(() => ({ drawn: window.ktoStudio.views.explainer.state.drawn, r: window.ktoStudio.views.explainer.state.last.r }));
    assert.equal(ex.drawn.length, steps[steps.length - 1].rows.length, 'one dot per row of the last batch');
    for (const p of ex.drawn) {
      assert.ok(p.r > ex.r[0] && p.r < ex.r[ex.r.length - 1], `reward ${p.r} inside the axis ${ex.r[0]}…${ex.r[ex.r.length - 1]}`);
      assert.ok(p.x >= 0 && p.x <= 760 && p.y >= 0 && p.y <= 320, 'on the canvas');
    }
    await page.locator('[data-testid=ex-canvas]').scrollIntoViewIfNeeded();
    const box = await page.locator('[data-testid=ex-canvas]').boundingBox();
    await page.mouse.move(box.x + ex.drawn[0].x * (box.width / 760), box.y + ex.drawn[0].y * (box.height / 320));
    await page.waitForSelector('[data-testid=ex-tip]:not([hidden])');
    assert.match(await page.textContent('[data-testid=ex-tip]'), new RegExp(`reward r = ${ex.drawn[0].r.toFixed(3).replace('.', '\\.')}`));
    await env.shot('10-explainer-batch');

    // Auto-label: machine-made labels, visibly marked, land in the dataset and stay editable.
    await view(page, 'generate');
    await page.fill('[data-testid=n-samples]', '3');
    await page.fill('[data-testid=max-tokens]', '40');
    await page.click('[data-testid=generate]');
    await page.waitForSelector('[data-testid=sample-group][data-done=true]', { timeout: 300_000 });
    await page.selectOption('[data-testid=auto-mood]', 'happier');
    await page.click('[data-testid=auto-label]');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=sample-state]')].every((s) => s.textContent.includes('🤖')), null, { timeout: 60_000 });
    const states = await page.locator('[data-testid=sample-state]').allTextContents();
    const labelled = states.filter((s) => !s.includes('neutral')).length;
    await view(page, 'dataset');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=row-auto]').length === n, labelled);
    await env.shot('11-auto-labels');
    if (labelled) {
      const before = await page.getAttribute('[data-testid=row-label]', 'data-label');
      await page.click('[data-testid=row-label]');
      await page.waitForFunction((b) => document.querySelector('[data-testid=row-label]').dataset.label !== b, before);
    }
  }));
