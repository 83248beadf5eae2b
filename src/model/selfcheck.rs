//! The CPU backend's matrix products (`fused::linear`: every projection, forward and backward)
//! against burn's own matmul on random shapes and memory layouts, run where the products run: by
//! the native test suite, and in the tab, whose threaded build multiplies with its own
//! relaxed-SIMD kernel (`madd.rs`) that no native test can execute; and the parallel loop those
//! products and the fused kernels run on (`par.rs`), whose tab version keeps its helpers awake;
//! and the fused attention, whose products skip the keys a row cannot see, against the same
//! maths composed from burn's ops with a mask.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::fused::{self, KeyRanges};
use super::par;

/// Runs `rounds` parallel loops of 1 to ~300 tasks, some of which start a loop of their own
/// (which runs in turn), back to back as a training step's are; `Ok(tasks run)` if every task of
/// every loop ran exactly once.
pub fn loops(rounds: usize) -> Result<usize, String> {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    let mut total = 0;
    for round in 0..rounds {
        let tasks = 1 + round * 37 % 300;
        let runs: Vec<AtomicU32> = (0..tasks * 4).map(|_| AtomicU32::new(0)).collect();
        par::for_each(tasks, usize::MAX, |i| {
            runs[i * 4].fetch_add(1, Relaxed);
            if i % 5 == 0 {
                par::for_each(3, usize::MAX, |j| {
                    runs[i * 4 + 1 + j].fetch_add(1, Relaxed);
                });
            }
        });
        for (slot, n) in runs.iter().enumerate() {
            let expected = u32::from(slot % 4 == 0 || (slot / 4) % 5 == 0);
            if n.load(Relaxed) != expected {
                return Err(format!(
                    "parallel loop check, round {round} ({tasks} tasks): slot {slot} ran {} times, not {expected}",
                    n.load(Relaxed)
                ));
            }
            total += expected as usize;
        }
    }
    Ok(total)
}

/// Checks `cases` random products (outputs, dx and dw, frozen weights getting no dw) on `device`'s
/// autodiff; `Ok(values compared)` or the first mismatch.
pub fn products(device: &Device, cases: usize, seed: u64) -> Result<usize, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = device.clone().autodiff();
    let vals = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"));
    let mut compared = 0;
    for case in 0..cases {
        // Shapes that stay on one thread, ones split into row blocks (many rows) or column blocks
        // (a wide output, like a vocabulary head), one-wide inner and outer sizes (case 3's dw: a
        // few rows, as in generation, over an inner size deeper than one block of the tab's kernel,
        // which then reads B in place), an inner size deeper than one packed block, and row blocks
        // sharing a B packed once (the tab's) that is more than one block deep and wide.
        let (b, t, i, o) = match case % 8 {
            0 => (rng.random_range(1..4), rng.random_range(1..9), rng.random_range(1..20), rng.random_range(1..20)),
            1 => (rng.random_range(2..9), rng.random_range(30..80), rng.random_range(16..90), rng.random_range(8..200)),
            2 => (1, rng.random_range(1..6), rng.random_range(30..70), rng.random_range(900..1500)),
            3 => (rng.random_range(1..3), rng.random_range(100..300), rng.random_range(1..5), rng.random_range(1..20)),
            4 => (2, 3, 1, 1),
            5 => (1, rng.random_range(5..40), rng.random_range(257..700), rng.random_range(250..300)),
            6 => (2, rng.random_range(150..250), rng.random_range(257..400), rng.random_range(257..300)),
            _ => (rng.random_range(1..3), rng.random_range(1..40), 64, 172),
        };
        let (x_swapped, w_transposed, frozen) = (case % 2 == 1, case % 3 == 0, case % 4 == 2);
        // x as a swapped view of a [T, B, in] tensor, w as the transpose of an [out, in] matrix.
        let normal = Distribution::Normal(0.0, 1.0);
        let x = if x_swapped {
            Tensor::<3>::random([t, b, i], normal, &device).swap_dims(0, 1)
        } else {
            Tensor::<3>::random([b, t, i], normal, &device)
        };
        let w = if w_transposed {
            Tensor::<2>::random([o, i], normal, &device).transpose()
        } else {
            Tensor::<2>::random([i, o], normal, &device)
        };
        let weight = Tensor::<3>::random([b, t, o], normal, &device);
        let run = |f: &dyn Fn(Tensor<3>, Tensor<2>) -> Tensor<3>| -> Result<_, String> {
            let (x, w) = (x.clone().require_grad(), if frozen { w.clone() } else { w.clone().require_grad() });
            let out = f(x.clone(), w.clone());
            let grads = (out.clone() * weight.clone()).sum().backward();
            let dx = x.grad(&grads).ok_or("no gradient for x")?;
            let dw = match w.grad(&grads) {
                Some(g) => Some(vals(g.unsqueeze())?),
                None => None,
            };
            Ok((vals(out.inner())?, vals(dx)?, dw))
        };
        let fused = run(&|x, w| fused::linear(x, w))?;
        let burn = run(&|x, w| x.matmul(w.unsqueeze()))?;
        let what = format!(
            "product check, case {case} (b {b} t {t} in {i} out {o} x_swapped {x_swapped} w_transposed {w_transposed} frozen {frozen})"
        );
        if fused.2.is_some() == frozen {
            return Err(format!("{what}: a frozen weight must get no gradient, a trained one one"));
        }
        let (fdw, bdw) = (fused.2.unwrap_or_default(), burn.2.unwrap_or_default());
        for (name, a, e) in [("out", &fused.0, &burn.0), ("dx", &fused.1, &burn.1), ("dw", &fdw, &bdw)] {
            if a.len() != e.len() {
                return Err(format!("{what}: {name} has {} values, burn's {}", a.len(), e.len()));
            }
            // Both sum in f32, in different orders (and with or without FMA): the error grows with the
            // inner size, which reaches ~1500 here.
            if let Some((j, (x, y))) =
                a.iter().zip(e).enumerate().find(|(_, (x, y))| (*x - *y).abs() > 1e-4 + 1e-4 * y.abs())
            {
                return Err(format!("{what}: {name}[{j}] is {x}, burn's matmul gives {y}"));
            }
            compared += a.len();
        }
    }
    Ok(compared)
}

/// Checks `cases` random attentions (outputs and the gradients of q, k and v) on `device`'s
/// autodiff: GQA groups, head sizes, KV-cache starts, padded rows and sliding windows, some long
/// enough for the products to split over threads and skip whole tiles of hidden keys;
/// `Ok(values compared)` or the first mismatch.
pub fn attention(device: &Device, cases: usize, seed: u64) -> Result<usize, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = device.clone().autodiff();
    let vals = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"));
    let mut compared = 0;
    for case in 0..cases {
        let (b, kv, g) = (rng.random_range(1..=3), rng.random_range(1..=3), rng.random_range(1..=3));
        let head = [1, 3, 8, 16, 64][rng.random_range(0..5)];
        let t = if case % 3 == 2 { rng.random_range(17..=70) } else { rng.random_range(1..=9) };
        // Half the cases continue a KV cache (generation: no padding); half are padded batches.
        let (start, lengths) = if case % 2 == 0 {
            (rng.random_range(0..=5), Vec::new())
        } else {
            (0, (0..b).map(|_| rng.random_range(1..=t)).collect())
        };
        let window = rng.random_bool(0.4).then(|| rng.random_range(1..=t.max(5)));
        let keys = start + t;
        let ranges = KeyRanges { queries: t, start, lengths: lengths.clone(), window };
        let mask = ranges.mask(b, t, keys, &device);
        // Rows that see no key at all (padding queries past a window) are never used: not compared.
        let hidden = mask.clone().into_data().try_to_vec::<bool>().map_err(|e| format!("{e:?}"))?;
        let seen = |row: usize, q: usize| (0..keys).any(|k| !hidden[(row * t + q) * keys + k]);
        // Per query row of q ([B, KV, g·T]) and per token of the output ([B, T]).
        let keep: Vec<bool> =
            (0..b).flat_map(|row| (0..kv * g * t).map(move |r| (row, r % t))).map(|(r, q)| seen(r, q)).collect();
        let keep_out: Vec<bool> =
            (0..b).flat_map(|row| (0..t).map(move |q| (row, q))).map(|(r, q)| seen(r, q)).collect();
        let normal = Distribution::Normal(0.0, 1.0);
        let rand = |rows: usize| Tensor::<4>::random([b, kv, rows, head], normal, &device);
        let (q, k, v) = (rand(g * t), rand(keys), rand(keys));
        let kept = TensorData::new(keep_out.iter().map(|&k| f32::from(u8::from(k))).collect(), [b, t, 1]);
        let weight =
            Tensor::<3>::random([b, t, kv * g * head], normal, &device) * Tensor::<3>::from_data(kept, &device);
        let run = |attend: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<3>| -> Result<_, String> {
            let (q, k, v) = (q.clone().require_grad(), k.clone().require_grad(), v.clone().require_grad());
            let out = attend(q.clone(), k.clone(), v.clone());
            let grads = (out.clone() * weight.clone()).sum().backward();
            let g = |x: &Tensor<4>| vals(x.grad(&grads).ok_or("no gradient")?.unsqueeze());
            Ok([vals(out.inner().unsqueeze())?, g(&q)?, g(&k)?, g(&v)?])
        };
        let fused = run(&|q, k, v| fused::attention(q, k, v, ranges.clone()))?;
        let composed = run(&|q, k, v| fused::composed(q, k, v, &mask))?;
        let what = format!(
            "attention check, case {case} (b {b} kv {kv} g {g} head {head} t {t} start {start} lengths {lengths:?} window {window:?})"
        );
        let all = vec![true; b * kv * keys];
        for (i, (name, keep)) in [("out", &keep_out), ("dq", &keep), ("dk", &all), ("dv", &all)].into_iter().enumerate()
        {
            let (a, e) = (&fused[i], &composed[i]);
            let per = a.len() / keep.len();
            let bad = a
                .iter()
                .zip(e)
                .enumerate()
                .find(|(j, (x, y))| keep[j / per] && (*x - *y).abs() > 2e-5 + 2e-5 * y.abs());
            if let Some((j, (x, y))) = bad {
                return Err(format!("{what}: {name}[{j}] is {x}, composed ops give {y}"));
            }
            compared += a.len();
        }
    }
    Ok(compared)
}
