//! Validation of a SentencePiece `precompiled_charsmap` (the `Precompiled` normalizer of
//! tokenizer.json) before `tokenizers` loads it: its reader (`spm_precompiled`) allocates the
//! size the blob claims and walks the double-array trie without bounds checks, so a damaged
//! blob exhausts memory or panics on the first character. This walks every reachable trie
//! transition once and checks each index the normalizer could ever read.

use base64::Engine;

fn has_leaf(u: usize) -> bool {
    (u >> 8) & 1 == 1
}
fn value(u: usize) -> usize {
    u & ((1usize << 31) - 1)
}
fn label(u: usize) -> usize {
    u & ((1usize << 31) | 0xFF)
}
fn offset(u: usize) -> usize {
    (u >> 10) << ((u & (1usize << 9)) >> 6)
}

/// `Err(reason)` when the normalizer could read outside its arrays or slice a string badly.
pub fn check(b64: &str) -> Result<(), String> {
    let blob = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("is not base64 ({e})"))?;
    let trie_size = blob.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize).ok_or("is empty")?;
    let units = trie_size / 4;
    if units == 0 || 4 + units * 4 > blob.len() {
        return Err(format!("claims a {trie_size}-byte trie in a {}-byte blob", blob.len()));
    }
    let array: Vec<usize> =
        blob[4..4 + units * 4].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize).collect();
    let normalized = std::str::from_utf8(&blob[4 + units * 4..]).map_err(|_| "holds text that is not UTF-8")?;
    let n = array.len();
    let bad = || "has a trie that points outside itself".to_string();
    let start = offset(array[0]);
    let mut seen = vec![false; n];
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        // `node` is a position the search XORs each input byte (1..=255) into.
        for c in 1..=255usize {
            let q = node ^ c;
            let Some(&u) = array.get(q) else {
                // Past the end is read unconditionally by the crate: a panic for that byte.
                return Err(bad());
            };
            if label(u) != c {
                continue;
            }
            let next = q ^ offset(u);
            if has_leaf(u) {
                let v = value(*array.get(next).ok_or_else(bad)?);
                if v > normalized.len() || !normalized.is_char_boundary(v) {
                    return Err("maps a character to a position outside its normalized text".into());
                }
            }
            if next >= n {
                return Err(bad());
            }
            if !seen[next] {
                seen[next] = true;
                stack.push(next);
            }
        }
    }
    Ok(())
}
