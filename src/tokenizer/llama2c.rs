//! llama2.c's SentencePiece-style BPE tokenizer (`tokenizer.bin` / `tok512.bin`), exactly as
//! `run.c` encodes and decodes: BOS, a dummy-prefix space, per-character lookup with byte
//! fallback, then greedy merges of the best-scoring adjacent pair (first pair wins ties).

use std::collections::HashMap;

use crate::Result;
use crate::error::format_err;
use crate::formats::Reader;

pub const BOS: u32 = 1;
/// Offset of the raw byte tokens `<0x00>..<0xFF>`.
const BYTE_OFFSET: u32 = 3;
/// run.c's pieces are at most this long; a larger header field means a corrupt file.
const MAX_PIECE: usize = 1 << 16;

#[derive(Debug, Clone)]
pub struct Llama2cTokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
    eos: u32,
}

impl Llama2cTokenizer {
    /// Parse a llama2.c tokenizer file. `vocab_size` is the model's (the file does not store it).
    pub fn from_bytes(bytes: &[u8], vocab_size: usize) -> Result<Self> {
        if bytes.is_empty() {
            return Err(format_err("the tokenizer file is empty: expected a llama2.c tokenizer (.bin)"));
        }
        let mut r = Reader::new(bytes, "the llama2.c tokenizer file");
        let max_len = r.i32()?;
        if max_len <= 0 || max_len as usize > MAX_PIECE {
            return Err(format_err(format!(
                "not a llama2.c tokenizer: max_token_length = {max_len} is outside 1..={MAX_PIECE}"
            )));
        }
        let mut pieces = Vec::with_capacity(vocab_size.min(1 << 20));
        let mut scores = Vec::with_capacity(vocab_size.min(1 << 20));
        for i in 0..vocab_size {
            if r.remaining() == 0 {
                return Err(format_err(format!(
                    "the llama2.c tokenizer file is truncated: it holds {i} tokens but the model's vocabulary has {vocab_size}; \
                     use the tokenizer that was exported with this model"
                )));
            }
            let score = r.f32()?;
            let len = r.i32()?;
            if len < 0 || len > max_len {
                return Err(format_err(format!(
                    "not a llama2.c tokenizer: token {i} has length {len}, outside 0..={max_len}"
                )));
            }
            pieces.push(r.take(len as usize)?.to_vec());
            scores.push(score);
        }
        if r.remaining() != 0 {
            return Err(format_err(format!(
                "the llama2.c tokenizer file has {} bytes left after {vocab_size} tokens: it belongs to a model \
                 with a larger vocabulary (offset {})",
                r.remaining(),
                r.pos()
            )));
        }
        if vocab_size < (BYTE_OFFSET + 256) as usize {
            return Err(format_err(format!(
                "a llama2.c tokenizer needs at least 259 tokens (3 special + 256 bytes), this model has {vocab_size}"
            )));
        }
        Self::from_pieces(pieces, scores, BOS)
    }

    /// A SentencePiece vocabulary given as pieces (spaces, not `▁`) and merge scores, with its
    /// end-of-sequence id (GGUF files carry Llama's tokenizer this way).
    pub fn from_pieces(pieces: Vec<Vec<u8>>, scores: Vec<f32>, eos: u32) -> Result<Self> {
        // Byte fallback emits ids 3..259 for any byte; they must exist.
        if pieces.len() < (BYTE_OFFSET + 256) as usize || scores.len() != pieces.len() || eos as usize >= pieces.len() {
            return Err(format_err(format!(
                "a SentencePiece vocabulary needs at least 259 pieces (3 special + 256 byte tokens), one score per \
                 piece and an end-of-sequence id inside it; this one has {} pieces, {} scores, eos {eos}",
                pieces.len(),
                scores.len()
            )));
        }
        let mut lookup = HashMap::with_capacity(pieces.len());
        for (i, p) in pieces.iter().enumerate() {
            lookup.entry(p.clone()).or_insert(i as u32);
        }
        Ok(Self { pieces, scores, lookup, eos })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// llama2.c models end a story by predicting BOS (their training data separates stories with
    /// it), and run.c stops there; so BOS doubles as the end-of-sequence token.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    pub fn eos_text(&self) -> String {
        String::from_utf8_lossy(&self.pieces[self.eos as usize]).into_owned()
    }

    /// Encode like run.c's `encode(text, bos, eos=0)`. The EOS piece text is matched as a whole
    /// token (like a Hugging Face added token) so that "completion + eos_text" ends in the EOS id.
    pub fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if bos {
            out.push(BOS);
        }
        let eos = self.eos_text();
        if eos.is_empty() {
            // An empty EOS piece matches everywhere; there is nothing to match whole.
            self.encode_plain(text, true, &mut out);
            return out;
        }
        let mut first = true;
        let mut rest = text;
        loop {
            let (segment, special) = match rest.find(eos.as_str()) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            self.encode_plain(segment, first, &mut out);
            first = false;
            if !special {
                break;
            }
            out.push(self.eos_id());
            rest = &rest[segment.len() + eos.len()..];
        }
        out
    }

    fn encode_plain(&self, text: &str, dummy_prefix: bool, out: &mut Vec<u32>) {
        let mut tokens: Vec<u32> = Vec::with_capacity(text.len() + 1);
        // run.c adds the dummy prefix only to non-empty text.
        if dummy_prefix
            && !text.is_empty()
            && let Some(&id) = self.lookup.get(b" ".as_slice())
        {
            tokens.push(id);
        }
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let bytes = ch.encode_utf8(&mut buf).as_bytes();
            match self.lookup.get(bytes) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(bytes.iter().map(|&b| b as u32 + BYTE_OFFSET)),
            }
        }
        self.merge(&mut tokens);
        out.extend(tokens);
    }

    /// run.c's merge loop — repeatedly merge the adjacent pair whose merged piece scores best,
    /// the leftmost on ties — in O(n log n) with a heap over a linked list instead of run.c's
    /// O(n^2) rescans (a 1 MB row never finished). Same result: the heap orders candidates by
    /// (score, leftmost position), and an entry is used only if both tokens are still as it saw them.
    fn merge(&self, tokens: &mut Vec<u32>) {
        use std::cmp::Ordering;
        use std::collections::BinaryHeap;

        struct Cand {
            score: f32,
            left: usize,
            id: u32,
            /// The ids the pair had when pushed (stale entries no longer match).
            pair: (u32, u32),
        }
        impl PartialEq for Cand {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == Ordering::Equal
            }
        }
        impl Eq for Cand {}
        impl PartialOrd for Cand {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Cand {
            fn cmp(&self, o: &Self) -> Ordering {
                // Max-heap: higher score first, then the leftmost position. run.c replaces its best
                // only on a strictly greater score, so a NaN score never wins; total_cmp would
                // rank NaN highest, hence the explicit map.
                let s = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
                s(self.score).total_cmp(&s(o.score)).then(o.left.cmp(&self.left))
            }
        }

        let n = tokens.len();
        if n < 2 {
            return;
        }
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let mut buf = Vec::new();
        let mut push = |heap: &mut BinaryHeap<Cand>, left: usize, a: u32, b: u32| {
            buf.clear();
            buf.extend_from_slice(&self.pieces[a as usize]);
            buf.extend_from_slice(&self.pieces[b as usize]);
            if let Some(&id) = self.lookup.get(&buf) {
                heap.push(Cand { score: self.scores[id as usize], left, id, pair: (a, b) });
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, i, tokens[i], tokens[i + 1]);
        }
        while let Some(c) = heap.pop() {
            let (l, r) = (c.left, next[c.left]);
            if !alive[l] || r >= n || (tokens[l], tokens[r]) != c.pair {
                continue;
            }
            // A NaN-scored merge never happens in run.c (nothing compares greater than it).
            if c.score.is_nan() {
                continue;
            }
            tokens[l] = c.id;
            alive[r] = false;
            next[l] = next[r];
            if next[r] < n {
                prev[next[r]] = l;
            }
            if prev[l] < n {
                push(&mut heap, prev[l], tokens[prev[l]], tokens[l]);
            }
            if next[l] < n {
                push(&mut heap, l, tokens[l], tokens[next[l]]);
            }
        }
        let mut i = 0;
        let mut j = 0;
        while i < n {
            tokens[j] = tokens[i];
            j += 1;
            i = next[i];
        }
        tokens.truncate(j);
    }

    /// The bytes run.c prints for `token` following `prev`.
    pub fn piece_bytes(&self, prev: Option<u32>, token: u32) -> Vec<u8> {
        let Some(piece) = self.pieces.get(token as usize) else { return Vec::new() };
        let mut piece = piece.as_slice();
        if prev == Some(BOS) && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        if let Some(b) = parse_byte_piece(piece) {
            return vec![b];
        }
        piece.to_vec()
    }

    pub fn decode_after(&self, prev: Option<u32>, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut prev = prev;
        for &id in ids {
            bytes.extend(self.piece_bytes(prev, id));
            prev = Some(id);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `<0xAB>` → 0xAB, as run.c's `sscanf(piece, "<0x%02hhX>")`.
fn parse_byte_piece(p: &[u8]) -> Option<u8> {
    if p.len() == 6 && p.starts_with(b"<0x") && p[5] == b'>' {
        u8::from_str_radix(std::str::from_utf8(&p[3..5]).ok()?, 16).ok()
    } else {
        None
    }
}
