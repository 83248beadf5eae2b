//! Mutations: the damage real files suffer (truncation, flipped bytes, spliced garbage) and the
//! values that break loaders (zero, huge and negative header integers; JSON of the wrong shape).

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;

const INTS: [u64; 14] = [
    0,
    1,
    2,
    3,
    7,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// 1–4 byte-level mutations of `input`; `other` is a second seed to splice from.
pub fn bytes(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let n = v.len().max(1);
        match rng.random_range(0..9) {
            0 => {
                let i = rng.random_range(0..n);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.random_range(0..8);
                }
            }
            1 => {
                let i = rng.random_range(0..n);
                if let Some(b) = v.get_mut(i) {
                    *b = rng.random();
                }
            }
            2 => v.truncate(rng.random_range(0..n)),
            3 => {
                let i = rng.random_range(0..=v.len());
                let k = rng.random_range(1..64);
                let junk: Vec<u8> = (0..k).map(|_| rng.random()).collect();
                v.splice(i..i, junk);
            }
            4 => {
                let i = rng.random_range(0..n);
                let j = (i + rng.random_range(1..256)).min(v.len());
                if i < j {
                    v.drain(i..j);
                }
            }
            5 | 6 => {
                // An interesting integer over 4 or 8 bytes, early in the file more often
                // (headers live there).
                let width = if rng.random() { 4 } else { 8 };
                let limit = if rng.random_range(0..3) == 0 { n } else { n.min(512) };
                let i = rng.random_range(0..limit);
                let mut x = INTS[rng.random_range(0..INTS.len())];
                if rng.random() {
                    x = x.wrapping_neg();
                }
                let b = x.to_le_bytes();
                for (k, &byte) in b.iter().take(width).enumerate() {
                    if let Some(t) = v.get_mut(i + k) {
                        *t = byte;
                    }
                }
            }
            7 => {
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = (a + rng.random_range(1..512)).min(other.len());
                    let i = rng.random_range(0..=v.len());
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ => {
                let i = rng.random_range(0..n);
                let j = (i + rng.random_range(1..128)).min(v.len());
                if i < j {
                    let chunk = v[i..j].to_vec();
                    let at = rng.random_range(0..=v.len());
                    v.splice(at..at, chunk);
                }
            }
        }
    }
    v
}

fn interesting_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..12) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(1u64 << 31),
        3 => Value::from(1u64 << 63),
        4 => Value::from(u64::MAX),
        5 => Value::from(1.5),
        6 => Value::from(1e300),
        7 => Value::String(String::new()),
        8 => Value::String("\n\u{0}<|im_end|>\u{feff}".into()),
        9 => Value::Null,
        10 => Value::Array(vec![Value::from(1), Value::from("x")]),
        _ => Value::from(rng.random_range(0..100_000)),
    }
}

/// Every node of `v` as a path of keys/indices.
fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    out.push(prefix.clone());
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                prefix.push(Step::Key(k.clone()));
                paths(c, prefix, out, budget);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate().take(64) {
                prefix.push(Step::Index(i));
                paths(c, prefix, out, budget);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// 1–3 structure-aware mutations of a JSON document (valid JSON with wrong shapes); falls back
/// to byte mutations when `input` is not JSON.
pub fn json(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let Ok(mut doc) = serde_json::from_slice::<Value>(input) else { return bytes(rng, input, other) };
    for _ in 0..rng.random_range(1..=3) {
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all, &mut 20_000);
        let path = all[rng.random_range(0..all.len())].clone();
        let Some(node) = at(&mut doc, &path) else { continue };
        match rng.random_range(0..6) {
            0 | 1 => *node = interesting_value(rng),
            2 => match node {
                Value::Object(o) if !o.is_empty() => {
                    let k = o.keys().nth(rng.random_range(0..o.len())).cloned().unwrap();
                    o.remove(&k);
                }
                Value::Array(a) if !a.is_empty() => {
                    a.remove(rng.random_range(0..a.len()));
                }
                _ => *node = Value::Null,
            },
            3 => match node {
                Value::Array(a) if !a.is_empty() => {
                    let i = rng.random_range(0..a.len());
                    let dup = a[i].clone();
                    for _ in 0..rng.random_range(1..4) {
                        a.push(dup.clone());
                    }
                }
                Value::String(s) => s.push_str(&s.clone()),
                _ => *node = interesting_value(rng),
            },
            4 => {
                if let Value::Number(n) = node {
                    let x = n.as_f64().unwrap_or(0.0);
                    *node = Value::from(match rng.random_range(0..4) {
                        0 => -x,
                        1 => x * 1024.0,
                        2 => (x as i64 + 1) as f64,
                        _ => 0.0,
                    });
                } else {
                    *node = interesting_value(rng);
                }
            }
            _ => {
                if let Value::String(s) = node {
                    let chars: Vec<char> = s.chars().collect();
                    if !chars.is_empty() {
                        let i = rng.random_range(0..chars.len());
                        *s = chars[..i].iter().collect();
                    }
                } else {
                    *node = interesting_value(rng);
                }
            }
        }
    }
    let out = serde_json::to_vec(&doc).unwrap_or_default();
    // Now and then also damage the text itself.
    if rng.random_range(0..4) == 0 { bytes(rng, &out, other) } else { out }
}
