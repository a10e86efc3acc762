//! `crema translate`: greedy decoding with a trained encoder-decoder (`crema::seq2seq`).
//! Sources come as arguments, or with `--pairs FILE` from a `source<TAB>target` file, which
//! also scores the sequence-level exact match (and the copy-the-source baseline).

use crate::Failure;
use anyhow::anyhow;
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Deploy model with inputs src, src_cont, tgt_in, tgt_cont and a probability output.
    #[arg(long)]
    model: String,
    /// Trained weights (.caffemodel).
    #[arg(long)]
    weights: String,
    /// A `source<TAB>target` file to decode and score.
    #[arg(long)]
    pairs: Option<String>,
    /// Most tokens decoded per source.
    #[arg(long, default_value_t = 20)]
    max_length: usize,
    /// Sources to decode.
    sources: Vec<String>,
    /// One JSON object per input on stdout (and with --pairs a last summary object).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let param = crema::load_net(&a.model)?;
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut StdRng::seed_from_u64(1))?;
    let trained = crema::caffe::caffemodel::read(&a.weights)?;
    let report = net.copy_trained_layers_from(&trained, &a.weights)?;
    if !report.fresh.is_empty() {
        return Err(Failure::User(anyhow!(
            "{}: no trained weights for layer(s) {}; is this the right model?",
            a.weights,
            report.fresh.join(", ")
        )));
    }
    let mut sources: Vec<Vec<u8>> = a.sources.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut targets = Vec::new();
    if let Some(p) = &a.pairs {
        let pairs = crema::data::seq_pairs::read_pairs(p, usize::MAX, usize::MAX)?;
        for pr in pairs {
            sources.push(pr.source);
            targets.push(pr.target);
        }
    }
    if sources.is_empty() {
        return Err(Failure::User(anyhow!(
            "give sources to decode or --pairs FILE"
        )));
    }
    let decoded = crema::seq2seq::greedy_decode(&mut net, &sources, a.max_length)?;
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let first_pair = sources.len() - targets.len();
    for (i, (s, d)) in sources.iter().zip(&decoded).enumerate() {
        let target = i.checked_sub(first_pair).map(|k| &targets[k]);
        if a.json {
            let mut o = serde_json::json!({"source": text(s), "decoded": text(d)});
            if let Some(t) = target {
                o["target"] = text(t).into();
                o["correct"] = (t == d).into();
            }
            println!("{o}");
        } else {
            let mark = target.map_or("", |t| if t == d { "  ok" } else { "  wrong" });
            println!("{} -> {}{mark}", text(s), text(d));
        }
    }
    if !targets.is_empty() {
        let acc = crema::seq2seq::exact_match(&decoded[first_pair..], &targets);
        let copy = crema::seq2seq::exact_match(&sources[first_pair..], &targets);
        if a.json {
            let o = serde_json::json!({"pairs": targets.len(), "exact_match": acc, "copy_baseline": copy});
            println!("{o}");
        } else {
            eprintln!(
                "exact match {:.4} on {} pairs (copying the source: {copy:.4})",
                acc,
                targets.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
