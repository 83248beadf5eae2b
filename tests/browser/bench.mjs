// Browser benchmark: the same workload as `kto bench` (a KTO step on 8 rows x 64 tokens, and
// 128 greedy tokens), run by the wasm engine in the page's worker. Prints one JSON line.
// Usage: node tests/browser/bench.mjs [webgpu|cpu] [steps]
import { launch, openApp } from './harness.mjs';

const backend = process.argv[2] || 'webgpu';
const steps = Number(process.argv[3] || 10);
const env = await launch({ webgpu: backend === 'webgpu' });
try {
  await openApp(env, `?backend=${backend === 'webgpu' ? 'webgpu' : 'cpu'}`);
  const result = await env.page.evaluate(async (steps) => {
    const { engine } = window.ktoStudio.app;
    const words = 'Once upon a time there was a little girl named Lily who loved to play in the park with her friends every day'.split(' ');
    const rows = Array.from({ length: 8 }, (_, i) => ({
      prompt: words.slice(0, 4 + (i % 3)).join(' '),
      completion: ' ' + words.slice(4 + (i % 3)).join(' ').repeat(4),
      label: i % 2 === 0,
    }));
    const config = { steps: steps + 1, batch_size: 8, max_length: 64, shuffle: false, learning_rate: 1e-3 };
    const times = [];
    let last = 0;
    await engine.call('train', { rows, config }, { onEvent: (e) => { if (e.type === 'progress') { times.push(e.elapsedMs - last); last = e.elapsedMs; } } });
    const greedy = { temperature: 0, max_tokens: 128 };
    await engine.call('generate', { prompt: 'Once upon a time', n: 1, sampling: greedy, which: 'base' });
    const t0 = performance.now();
    const out = await engine.call('generate', { prompt: 'Once upon a time', n: 1, sampling: greedy, which: 'base' });
    const genS = (performance.now() - t0) / 1000;
    const steady = times.slice(1).sort((a, b) => a - b);
    return { kto_step_ms: steady[steady.length >> 1], first_step_ms: times[0], generate_tokens: out[0].ids.length, generate_tokens_per_s: out[0].ids.length / genS };
  }, steps);
  const badge = await env.page.getAttribute('[data-testid=backend]', 'data-backend');
  console.log(JSON.stringify({ where: 'browser', backend: badge, adapter: await env.page.textContent('[data-testid=backend]'), ...result }));
} finally {
  await env.close();
}
