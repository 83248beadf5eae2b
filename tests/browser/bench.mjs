// Browser benchmark: the engine's own benchmark (src/bench.rs, the same code as `kto bench`: a KTO step on
// 8 rows x 64 tokens, 128 greedy tokens, the matmul rate) run by the wasm engine in the page's worker on each
// backend asked for, and the native CLI's CPU backend in the same run for the ratio. "products ms" is the part
// of the step spent in the CPU kernels' matrix products, "rest ms" everything else (CPU backends only).
// Usage: node tests/browser/bench.mjs [backends, default cpu,webgpu] [steps]
//   backends: cpu (the threaded build: the page is cross-origin isolated), cpu1 (the page served without
//   COOP/COEP: the single-threaded build), webgpu.
//   MODEL=file.gguf LORA=8 CHAT=1 GEN=16 SEQ=64: another model (opened through the page's file picker), LoRA, chat rows.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { launch, openApp } from './harness.mjs';

const backends = (process.argv[2] || 'cpu,webgpu').split(',');
const steps = Number(process.argv[3] || 10);
const KTO = process.env.KTO_BIN || join(process.env.HOME, '.cache/kto-studio/target-native/release/kto');

const { MODEL, LORA = '0', CHAT, GEN = '128', SEQ = '64' } = process.env;
const opts = { steps, seqLen: Number(SEQ), genTokens: Number(GEN), loraRank: Number(LORA), chat: !!CHAT };
const rows = [];
const nativeArgs = ['bench', '--backends', 'cpu', '--steps', String(steps), '--rounds', '1', '--gen-tokens', GEN, '--seq-len', SEQ,
  '--lora-rank', LORA, ...(MODEL ? ['--model', MODEL] : []), ...(CHAT ? ['--chat'] : [])];
const native = JSON.parse(execFileSync(KTO, nativeArgs, { encoding: 'utf8' }).trim().split('\n').pop()).result;
rows.push({ where: 'native', ...native });
console.log(JSON.stringify(rows.at(-1)));
for (const backend of backends) {
  const env = await launch({ webgpu: backend === 'webgpu', isolated: backend !== 'cpu1' });
  try {
    await openApp(env, `?backend=${backend === 'cpu1' ? 'cpu' : backend}`);
    if (MODEL) {
      await env.page.setInputFiles('[data-testid=model-files]', MODEL);
      await env.page.waitForFunction(() => !/stories260K/.test(document.querySelector('[data-testid=model-name]')?.textContent || 'stories260K'), null, { timeout: 600_000 });
    }
    const result = await env.page.evaluate((o) => window.ktoStudio.app.engine.call('bench', o), opts);
    const badge = await env.page.getAttribute('[data-testid=backend]', 'title') || await env.page.textContent('[data-testid=backend]');
    const isolated = await env.page.evaluate(() => self.crossOriginIsolated);
    rows.push({ where: 'browser', adapter: badge, crossOriginIsolated: isolated, ...result });
    console.log(JSON.stringify(rows.at(-1)));
  } finally {
    await env.close();
  }
}
const nativeMs = rows[0].kto_step_ms;
console.error('\nwhere    backend  ms/step  vs native cpu  products ms  rest ms  first step ms  matmul GFLOP/s  step / matmul time  gen tok/s');
for (const r of rows) {
  const threads = r.where === 'native' ? '' : /(\d+) threads?/.exec(r.adapter)?.[1];
  console.error([r.where.padEnd(8), `${r.backend}${threads ? `/${threads}` : ''}`.padEnd(7), r.kto_step_ms.toFixed(1).padStart(8), `${(r.kto_step_ms / nativeMs).toFixed(2)}x`.padStart(14),
    (r.products_ms?.toFixed(1) ?? '-').padStart(12), (r.products_ms == null ? '-' : (r.kto_step_ms - r.products_ms).toFixed(1)).padStart(8),
    r.first_step_ms.toFixed(0).padStart(14), r.matmul_gflops.toFixed(2).padStart(15), `${r.step_over_matmul.toFixed(1)}x`.padStart(19),
    r.generate_tokens_per_s.toFixed(1).padStart(10)].join(' '));
}
