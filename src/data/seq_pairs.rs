//! Sequence pairs for encoder-decoder models (the `SeqPairData` layer's source and `crema
//! translate`'s input): a text file of `source<TAB>target` lines whose bytes are the token ids,
//! and the toy tasks `crema convert --seq2seq` generates deterministically.
//!
//! Reserved ids: [`PAD`] (0) fills the encoder's leading steps (sources are right-aligned so
//! the encoder's last step is every source's last byte), [`GO`] (2) starts the decoder input,
//! [`EOS`] (`\n`, 10) ends every target. Sequences hold bytes 32..=126 (printable ASCII).

use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Encoder padding id.
pub const PAD: u8 = 0;
/// Decoder start id.
pub const GO: u8 = 2;
/// End-of-target id.
pub const EOS: u8 = b'\n';
/// Size of the id space (ids are bytes below 128).
pub const VOCAB: usize = 128;

/// One source and its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub source: Vec<u8>,
    pub target: Vec<u8>,
}

/// Checks that `s` holds only printable ASCII; `what` and `line` locate it for the error.
fn check_bytes(s: &[u8], label: &str, line: usize, what: &str) -> Result<()> {
    match s.iter().find(|b| !(32..=126).contains(*b)) {
        Some(b) => Err(Error::format(
            label,
            format!("line {line}: the {what} holds byte {b}; only printable ASCII (32..=126) is allowed"),
        )),
        None => Ok(()),
    }
}

/// Parses `source<TAB>target` lines (empty lines skipped); sources must fit `source_steps`
/// and targets `target_steps - 1` (the end marker takes a step). `label` names the file.
pub fn parse_pairs(
    text: &str,
    source_steps: usize,
    target_steps: usize,
    label: &str,
) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        let Some((s, t)) = line.split_once('\t') else {
            return Err(Error::format(
                label,
                format!("line {n}: expected `source<TAB>target`"),
            ));
        };
        let (s, t) = (s.as_bytes(), t.as_bytes());
        check_bytes(s, label, n, "source")?;
        check_bytes(t, label, n, "target")?;
        if s.is_empty() || s.len() > source_steps {
            return Err(Error::format(
                label,
                format!("line {n}: the source has {} bytes; source_steps {source_steps} allows 1..={source_steps}", s.len()),
            ));
        }
        if t.len() + 1 > target_steps {
            return Err(Error::format(
                label,
                format!(
                    "line {n}: the target has {} bytes; target_steps {target_steps} allows at most {} (one step is the end marker)",
                    t.len(),
                    target_steps.saturating_sub(1)
                ),
            ));
        }
        pairs.push(Pair {
            source: s.to_vec(),
            target: t.to_vec(),
        });
    }
    if pairs.is_empty() {
        return Err(Error::format(label, "no `source<TAB>target` lines"));
    }
    Ok(pairs)
}

/// Reads a pairs file with [`parse_pairs`].
pub fn read_pairs(
    path: impl AsRef<Path>,
    source_steps: usize,
    target_steps: usize,
) -> Result<Vec<Pair>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_pairs(
        &text,
        source_steps,
        target_steps,
        &path.display().to_string(),
    )
}

/// The generated tasks.
pub const TASKS: &[&str] = &["reverse", "sort"];

/// `count` pairs of the toy task `task` (see [`TASKS`]): random digit strings of
/// `min_len..=max_len` digits and their reversal or their digits sorted. The same seed gives
/// the same pairs on every machine.
pub fn generate(
    task: &str,
    count: usize,
    min_len: usize,
    max_len: usize,
    seed: u64,
) -> Result<Vec<Pair>> {
    crate::ensure!(
        TASKS.contains(&task),
        "unknown task `{task}`; known tasks: {}",
        TASKS.join(", ")
    );
    crate::ensure!(
        min_len >= 1 && min_len <= max_len,
        "lengths must satisfy 1 <= min <= max, got {min_len}..={max_len}"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..count)
        .map(|_| {
            let len = rng.gen_range(min_len..=max_len);
            let source: Vec<u8> = (0..len).map(|_| b'0' + rng.gen_range(0..10u8)).collect();
            let mut target = source.clone();
            if task == "reverse" {
                target.reverse();
            } else {
                target.sort_unstable();
            }
            Pair { source, target }
        })
        .collect())
}

/// The pairs as file text (`source<TAB>target` lines).
pub fn to_text(pairs: &[Pair]) -> String {
    let mut s = String::new();
    for p in pairs {
        s.push_str(&String::from_utf8_lossy(&p.source));
        s.push('\t');
        s.push_str(&String::from_utf8_lossy(&p.target));
        s.push('\n');
    }
    s
}

/// Writes `source` right-aligned into column `n` of a `steps x streams` time-major id block
/// (PAD before it) and its `cont` flags (0 up to and including the first byte, then 1).
pub fn put_source(src: &mut [f32], cont: &mut [f32], streams: usize, n: usize, source: &[u8]) {
    let steps = src.len() / streams;
    let start = steps - source.len();
    for t in 0..steps {
        let i = t * streams + n;
        src[i] = if t < start {
            PAD as f32
        } else {
            source[t - start] as f32
        };
        cont[i] = if t > start { 1.0 } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pairs_are_deterministic_and_parse_back() {
        let a = generate("reverse", 50, 2, 5, 7).unwrap();
        assert_eq!(a, generate("reverse", 50, 2, 5, 7).unwrap());
        assert!(a.iter().all(
            |p| (2..=5).contains(&p.source.len()) && p.target.iter().rev().eq(p.source.iter())
        ));
        let s = generate("sort", 20, 3, 3, 1).unwrap();
        assert!(s.iter().all(|p| p.target.windows(2).all(|w| w[0] <= w[1])));
        assert_eq!(parse_pairs(&to_text(&a), 5, 6, "t").unwrap(), a);
        assert!(generate("copy", 1, 1, 2, 0).is_err());
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = |t: &str| parse_pairs(t, 3, 4, "p.tsv").unwrap_err().to_string();
        assert!(e("12\t21\n123").contains("line 2"));
        assert!(e("1234\t1").contains("source_steps 3"));
        assert!(e("1\t1234").contains("at most 3"));
        assert!(e("1\x01\t1").contains("printable"));
        assert!(e("\n\n").contains("no `source"));
    }

    #[test]
    fn sources_are_right_aligned() {
        let (mut src, mut cont) = (vec![9.0; 8], vec![9.0; 8]);
        put_source(&mut src, &mut cont, 2, 1, b"ab");
        assert_eq!(src, [9.0, 0.0, 9.0, 0.0, 9.0, 97.0, 9.0, 98.0]);
        assert_eq!(cont, [9.0, 0.0, 9.0, 0.0, 9.0, 0.0, 9.0, 1.0]);
    }
}
