// Browser benchmark: the engine's own benchmark (src/bench.rs, the same code as `kto bench`: a KTO step on
// 8 rows x 64 tokens, 128 greedy tokens, the matmul rate) run by the wasm engine in the page's worker on each
// backend asked for, and the native CLI's CPU backend in the same run for the ratio, alternated for ROUNDS rounds
// (default 1). "products ms" is the part of the step spent in the CPU kernels' matrix products (CPU backends only),
// "kernels ms" the part in the fused CPU kernels (norms, RoPE, softmax, SwiGLU, log-probs), "burn ms" the rest
// (burn's autodiff, optimizer and allocation).
// Usage: [ROUNDS=n] node tests/browser/bench.mjs [backends, default cpu,webgpu] [steps]
//   backends: cpu (the threaded build: the page is cross-origin isolated), cpu1 (the page served without
//   COOP/COEP: the single-threaded build), webgpu.
//   MODEL=file.gguf LORA=8 CHAT=1 GEN=16 SEQ=64: another model (opened through the page's file picker), LoRA, chat rows.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { launch, openApp } from './harness.mjs';

const backends = (process.argv[2] || 'cpu,webgpu').split(',');
const steps = Number(process.argv[3] || 10);
const KTO = process.env.KTO_BIN || join(process.env.HOME, '.cache/kto-studio/target-native/release/kto');

const { MODEL, LORA = '0', CHAT, GEN = '128', SEQ = '64', ROUNDS = '1' } = process.env;
const rounds = Number(ROUNDS);
const opts = { steps, seqLen: Number(SEQ), genTokens: Number(GEN), loraRank: Number(LORA), chat: !!CHAT };
const nativeArgs = ['bench', '--backends', 'cpu', '--steps', String(steps), '--rounds', '1', '--gen-tokens', GEN, '--seq-len', SEQ,
  '--lora-rank', LORA, ...(MODEL ? ['--model', MODEL] : []), ...(CHAT ? ['--chat'] : [])];
// One page per backend, opened once; then each round runs native and every page in turn, so a drift in
// the machine's speed (this VM's host is noisy) lands on both sides of a round's ratio.
const pages = [];
const results = [[]];
try {
  for (const backend of backends) {
    const env = await launch({ webgpu: backend === 'webgpu', isolated: backend !== 'cpu1' });
    pages.push({ backend, env });
    results.push([]);
    await openApp(env, `?backend=${backend === 'cpu1' ? 'cpu' : backend}`);
    if (MODEL) {
      await env.page.setInputFiles('[data-testid=model-files]', MODEL);
      await env.page.waitForFunction(() => !/stories260K/.test(document.querySelector('[data-testid=model-name]')?.textContent || 'stories260K'), null, { timeout: 600_000 });
    }
  }
  for (let round = 1; round <= rounds; round++) {
    const native = JSON.parse(execFileSync(KTO, nativeArgs, { encoding: 'utf8' }).trim().split('\n').pop()).result;
    results[0].push({ where: 'native', ...native });
    console.log(JSON.stringify({ round, ...results[0].at(-1) }));
    for (const [i, { env }] of pages.entries()) {
      const result = await env.page.evaluate((o) => window.ktoStudio.app.engine.call('bench', o), opts);
      const badge = await env.page.getAttribute('[data-testid=backend]', 'title') || await env.page.textContent('[data-testid=backend]');
      const isolated = await env.page.evaluate(() => self.crossOriginIsolated);
      results[i + 1].push({ where: 'browser', adapter: badge, crossOriginIsolated: isolated, ...result });
      console.log(JSON.stringify({ round, ...results[i + 1].at(-1) }));
    }
  }
} finally {
  for (const { env } of pages) await env.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fixed = (x, d = 1) => (x == null ? '-' : x.toFixed(d));
console.error(`\nmedians over ${rounds} round(s); "vs native" is the median of each round's ratio`);
console.error('where    backend  ms/step  vs native cpu  products ms  kernels ms  burn ms  first step ms  matmul GFLOP/s  step / matmul time  gen tok/s');
for (const runs of results) {
  const r = runs[0];
  const m = (key) => (runs.every((x) => x[key] != null) ? median(runs.map((x) => x[key])) : null);
  const step = m('kto_step_ms');
  const ratio = median(runs.map((x, i) => x.kto_step_ms / results[0][i].kto_step_ms));
  const threads = r.where === 'native' ? '' : /(\d+) threads?/.exec(r.adapter)?.[1];
  const [products, kernels] = [m('products_ms'), m('kernels_ms')];
  console.error([r.where.padEnd(8), `${r.backend}${threads ? `/${threads}` : ''}`.padEnd(7), fixed(step).padStart(8), `${ratio.toFixed(2)}x`.padStart(14),
    fixed(products).padStart(12), fixed(kernels).padStart(11), fixed(products == null ? null : step - products - kernels).padStart(8),
    fixed(m('first_step_ms'), 0).padStart(14), fixed(m('matmul_gflops'), 2).padStart(15), `${fixed(m('step_over_matmul'))}x`.padStart(19),
    fixed(m('generate_tokens_per_s')).padStart(10)].join(' '));
}
