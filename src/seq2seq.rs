//! Greedy decoding with an encoder-decoder deploy net (`models/seq2seq/deploy.yaml`).
//!
//! The net's inputs, by name: `src` (Ts x N source ids) and `src_cont` as `SeqPairData` makes
//! them, `tgt_in` (T x N decoder input: GO, then the tokens decoded so far) and `tgt_cont`
//! (T x N, all 1: the decoder continues from the encoder's final state); every other input
//! (the encoder's initial states) is set to zero. The only output holds T x N x V
//! probabilities. Decoding runs N sources at a time: at step k the decoder input has k steps,
//! and each stream's most likely token at the last step is appended until it is EOS or
//! `max_len` tokens have been emitted. (The decoder re-reads its prefix at every step: simple,
//! and cheap for the short sequences this is meant for.)

use crate::data::seq_pairs::{put_source, EOS, GO, PAD};
use crate::{Net, Result};

const NAMES: [&str; 4] = ["src", "src_cont", "tgt_in", "tgt_cont"];

/// Decodes every source (see the module doc); returns the decoded targets without EOS.
pub fn greedy_decode(net: &mut Net, sources: &[Vec<u8>], max_len: usize) -> Result<Vec<Vec<u8>>> {
    for name in NAMES {
        crate::ensure!(
            net.input_index(name).is_some(),
            "the decoding net needs an input blob `{name}` (inputs: {})",
            net.input_names().join(", ")
        );
    }
    let output = match net.output_names().as_slice() {
        [one] => one.to_string(),
        many => crate::bail!(
            "the decoding net must have one output (probabilities), has {}",
            many.join(", ")
        ),
    };
    let shape = net.blob("src").map(|b| b.shape.clone()).unwrap_or_default();
    crate::ensure!(
        shape.len() == 2,
        "input `src` must be Ts x N, has shape {shape:?}"
    );
    let (ts, n) = (shape[0], shape[1]);
    let others: Vec<String> = net
        .input_names()
        .into_iter()
        .filter(|s| !NAMES.contains(s))
        .map(str::to_string)
        .collect();
    let mut results = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(n) {
        let mut src = vec![PAD as f32; ts * n];
        let mut cont = vec![0.0; ts * n];
        for (j, s) in chunk.iter().enumerate() {
            crate::ensure!(
                !s.is_empty() && s.len() <= ts,
                "source {:?} has {} bytes; the net takes 1..={ts}",
                String::from_utf8_lossy(s),
                s.len()
            );
            put_source(&mut src, &mut cont, n, j, s);
        }
        let mut outs: Vec<Vec<u8>> = vec![Vec::new(); chunk.len()];
        let mut done = vec![false; chunk.len()];
        for step in 1..=max_len + 1 {
            let mut tin = vec![PAD as f32; step * n];
            for (j, o) in outs.iter().enumerate() {
                tin[j] = GO as f32;
                for (t, &b) in o.iter().enumerate().take(step - 1) {
                    tin[(t + 1) * n + j] = b as f32;
                }
            }
            set(net, "src", &[ts, n], &src);
            set(net, "src_cont", &[ts, n], &cont);
            set(net, "tgt_in", &[step, n], &tin);
            set(net, "tgt_cont", &[step, n], &vec![1.0; step * n]);
            for name in &others {
                if let Some(b) = net.blob_mut(name) {
                    b.data.iter_mut().for_each(|v| *v = 0.0);
                }
            }
            net.forward()?;
            let probs = net
                .blob(&output)
                .map(|b| b.data.as_slice())
                .unwrap_or_default();
            crate::ensure!(
                probs.len().is_multiple_of(step * n) && !probs.is_empty(),
                "output `{output}` should be T x N x V = {step} x {n} x V, has {} values",
                probs.len()
            );
            let v = probs.len() / (step * n);
            for (j, o) in outs.iter_mut().enumerate() {
                if done[j] {
                    continue;
                }
                let row = &probs[((step - 1) * n + j) * v..((step - 1) * n + j + 1) * v];
                let best = row
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &p)| if p > b.1 { (i, p) } else { b })
                    .0;
                if best == EOS as usize || step > max_len {
                    done[j] = true;
                } else {
                    o.push(best.min(255) as u8);
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        results.extend(outs);
    }
    Ok(results)
}

/// Reshapes input `name` to `shape` and copies `data` in.
fn set(net: &mut Net, name: &str, shape: &[usize], data: &[f32]) {
    if let Some(b) = net.blob_mut(name) {
        b.reshape(shape);
        b.data.copy_from_slice(data);
    }
}

/// Fraction of `decoded` equal to `targets` (sequence-level exact match).
pub fn exact_match(decoded: &[Vec<u8>], targets: &[Vec<u8>]) -> f64 {
    let hits = decoded.iter().zip(targets).filter(|(d, t)| d == t).count();
    hits as f64 / targets.len().max(1) as f64
}
