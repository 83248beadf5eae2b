// The tab's matrix-product kernel (src/model/madd.rs) alone on one thread in Chromium, against the FMA
// peak of 128-bit wasm SIMD measured in the same module (tests/kernel-bench/): the kernel's share of what
// the CPU's vector units allow the tab, on the shapes one task of the stories260K step multiplies.
// Rounds alternate the two; best of each. Builds tests/kernel-bench first (Debian's toolchain, as the
// threaded engine: `./scripts/build.sh` must have run once).
// Usage: node tests/browser/kernel-bench.mjs [rounds, default 15]
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, launch } from './harness.mjs';

const rounds = Number(process.argv[2] || 15);
const target = join(process.env.KTO_CACHE || join(process.env.HOME, '.cache/kto-studio'), 'target-kernel-bench');
execFileSync('/usr/bin/cargo', ['build', '--release', '--manifest-path', join(ROOT, 'tests/kernel-bench/Cargo.toml'),
  '--target', 'wasm32-unknown-unknown', '-Zbuild-std=std,panic_abort'], {
  stdio: 'inherit',
  env: {
    ...process.env, PATH: `/usr/bin:${process.env.PATH}`, RUSTC: '/usr/bin/rustc', RUSTC_BOOTSTRAP: '1', CARGO_TARGET_DIR: target,
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS: '-C target-feature=+simd128,+relaxed-simd',
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER: '/usr/lib/llvm-22/bin/wasm-ld',
  },
});
const wasm = readFileSync(join(target, 'wasm32-unknown-unknown/release/kernel_bench.wasm')).toString('base64');

// [m, n, k, B transposed]: a row block of the projections (512 tokens in 8 tasks) and the LM head, the
// attention scores (k = head size 8, keys read transposed) and output (n = 8), and two larger shapes.
const shapes = [[64, 64, 64, 0], [64, 172, 64, 0], [64, 64, 172, 0], [64, 512, 64, 0], [128, 64, 8, 1], [128, 8, 64, 0],
  [512, 512, 64, 0], [256, 256, 256, 0], [64, 172, 64, 1], [64, 64, 172, 1], [64, 64, 512, 0], [64, 64, 512, 1],
  [128, 64, 8, 1, 1], [128, 8, 64, 0, 2], [64, 172, 64, 0, 3], [64, 172, 64, 1, 3], [64, 64, 512, 1, 3]];
const env = await launch({ webgpu: false });
try {
  await env.page.goto(env.origin);
  const { peak, rows } = await env.page.evaluate(async ({ wasm, shapes, rounds }) => {
    const { instance } = await WebAssembly.instantiate(Uint8Array.from(atob(wasm), (c) => c.charCodeAt(0)), {});
    const { product, peak } = instance.exports;
    const gflops = (flop, f) => { const t = performance.now(); f(); return flop / (performance.now() - t) / 1e6; };
    const iters = 5_000_000;
    let best = 0;
    const rows = shapes.map((s) => ({ shape: s, best: 0 }));
    for (let r = 0; r < rounds; r++) {
      best = Math.max(best, gflops(80 * iters, () => peak(iters, 0.5)));
      for (const row of rows) {
        const [m, n, k, bt, causal = 0] = row.shape;
        const reps = Math.max(1, Math.round(1e8 / (2 * m * n * k)));
        row.best = Math.max(row.best, gflops(2 * m * n * k * reps, () => product(m, n, k, reps, bt, causal)));
      }
    }
    return { peak: best, rows };
  }, { wasm, shapes, rounds });
  console.log(`FMA peak (f32x4.relaxed_madd, one thread): ${peak.toFixed(1)} GFLOP/s`);
  console.log('   m     n     k  B     GFLOP/s  of peak');
  for (const { shape: [m, n, k, bt, causal], best } of rows) {
    console.log([m, n, k].map((x) => String(x).padStart(5)).join(' '), bt ? 'ᵀ' : ' ', best.toFixed(1).padStart(10),
      `${(100 * best / peak).toFixed(0)}%`.padStart(8),
      ['', '(causal: rate as if computed whole)', '(causal: rate as if computed whole)', '(B packed once, reused)'][causal || 0]);
  }
} finally {
  await env.close();
}
