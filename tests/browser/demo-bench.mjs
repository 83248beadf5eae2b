// Efficacy benchmark in the page: the full "teach a mood" recipe run by the guided demo.
// Usage: node tests/browser/demo-bench.mjs [sadder|happier] [cpu|webgpu]   (prints one JSON line)
import { openApp, view, withBrowser } from './harness.mjs';

const mood = process.argv[2] || 'sadder';
const backend = process.argv[3] || 'cpu';
await withBrowser({ webgpu: backend === 'webgpu' }, `demo-bench-${mood}`, async (env) => {
  const { page } = env;
  await openApp(env, `?backend=${backend}`);
  await view(page, 'demo');
  await page.selectOption('[data-testid=demo-size]', 'full');
  await page.selectOption('[data-testid=demo-mood]', mood);
  const t0 = Date.now();
  await page.click('[data-testid=demo-run]');
  await page.waitForFunction(() => document.querySelector('[data-testid=demo-results]').dataset.done === 'true'
    || !document.querySelector('[data-testid=demo-error]').hidden, null, { timeout: 7_200_000 });
  const wall = (Date.now() - t0) / 1000;
  const read = (m, side) => page.getAttribute(`[data-metric=${m}] [data-side=${side}]`, 'data-value').then(Number);
  const out = { where: 'browser', backend: await page.getAttribute('[data-testid=backend]', 'data-backend'), mood, wall_seconds: wall };
  for (const m of ['target_rate', 'positive_rate', 'mean_score', 'mean_tokens', 'nll_per_token']) out[m] = [await read(m, 'base'), await read(m, 'trained')];
  out.status = await page.textContent('[data-testid=demo-status]');
  console.log(JSON.stringify(out));
});
