//! A small version of models/seq2seq: an encoder-decoder LSTM learns to reverse digit strings
//! of 2..=4 digits in a few hundred Adam steps, and greedy decoding of held-out strings beats
//! the copy-the-source baseline by far.

use crema::data::seq_pairs::{generate, to_text};
use crema::solver::Solver;
use crema::Net;
use rand::rngs::StdRng;
use rand::SeedableRng;

const H: usize = 48;
const N: usize = 32;

/// The model's layers from the embeddings on (as in models/seq2seq/net.yaml, smaller).
fn layers() -> String {
    let lstm = |name: &str, bottom: &str, top: &str| {
        format!(
            "  - {{ name: {name}, type: LSTM, bottom: {bottom}, top: {top}, recurrent_param: {{ num_output: {H}, expose_hidden: true, weight_filler: {{ type: uniform, min: -0.1, max: 0.1 }}, bias_filler: {{ type: constant }} }} }}\n"
        )
    };
    let embed = |name: &str, bottom: &str| {
        format!("  - {{ name: {name}, type: Embed, bottom: {bottom}, top: {name}, embed_param: {{ num_output: 16, input_dim: 128, bias_term: false, weight_filler: {{ type: uniform, min: -0.1, max: 0.1 }} }} }}\n")
    };
    let mut s = embed("src_embed", "src");
    s += &lstm(
        "encoder",
        "[src_embed, src_cont, h0, c0]",
        "[enc, enc_h, enc_c]",
    );
    s += "  - { name: silence, type: Silence, bottom: [enc] }\n";
    s += &embed("tgt_embed", "tgt_in");
    s += &lstm(
        "decoder",
        "[tgt_embed, tgt_cont, enc_h, enc_c]",
        "[dec, dec_h, dec_c]",
    );
    s += "  - { name: silence2, type: Silence, bottom: [dec_h, dec_c] }\n";
    s += "  - { name: predict, type: InnerProduct, bottom: dec, top: predict, inner_product_param: { num_output: 128, axis: 2, weight_filler: { type: uniform, min: -0.1, max: 0.1 }, bias_filler: { type: constant } } }\n";
    s
}

#[test]
fn reversal_is_learnt_well_above_the_copy_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.tsv");
    std::fs::write(
        &train,
        to_text(&generate("reverse", 2000, 2, 4, 1).unwrap()),
    )
    .unwrap();
    let net = format!(
        "name: s2s\nlayer:\n  - {{ name: data, type: SeqPairData, top: [src, src_cont, tgt_in, tgt_out], seq_pair_data_param: {{ source: '{}', batch_size: {N}, source_steps: 4, target_steps: 5 }} }}\n  - {{ name: states, type: DummyData, top: [h0, c0], dummy_data_param: {{ shape: [{{ dim: [1, {N}, {H}] }}, {{ dim: [1, {N}, {H}] }}] }} }}\n  - {{ name: ones, type: DummyData, top: tgt_cont, dummy_data_param: {{ shape: {{ dim: [5, {N}] }}, data_filler: {{ type: constant, value: 1 }} }} }}\n{}  - {{ name: loss, type: SoftmaxWithLoss, bottom: [predict, tgt_out], top: loss, loss_param: {{ ignore_label: -1 }}, softmax_param: {{ axis: 2 }} }}\n",
        train.display(),
        layers()
    );
    let text = "type: Adam\nbase_lr: 0.01\nmomentum: 0.9\nmomentum2: 0.999\nlr_policy: fixed\nclip_gradients: 5\nrandom_seed: 1701\nsnapshot_after_train: false\nmax_iter: 400\ndisplay: 0";
    let mut p: crema::proto::SolverParameter = crema::spec::from_yaml_str(text, "solver").unwrap();
    p.net_param = Some(crema::spec::from_yaml_str(&net, "net").unwrap());
    let mut solver = Solver::new(p).unwrap();
    solver.step(400).unwrap();

    let deploy = format!(
        "name: s2s\nlayer:\n  - {{ name: input, type: Input, top: [src, src_cont, tgt_in, tgt_cont, h0, c0], input_param: {{ shape: [{{ dim: [4, 50] }}, {{ dim: [4, 50] }}, {{ dim: [1, 50] }}, {{ dim: [1, 50] }}, {{ dim: [1, 50, {H}] }}, {{ dim: [1, 50, {H}] }}] }} }}\n{}  - {{ name: prob, type: Softmax, bottom: predict, top: prob, softmax_param: {{ axis: 2 }} }}\n",
        layers()
    );
    let param = crema::spec::from_yaml_str(&deploy, "deploy").unwrap();
    let mut dnet = Net::for_phase(
        &param,
        crema::proto::Phase::Test,
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    dnet.copy_params_from_net(solver.net()).unwrap();
    let held_out = generate("reverse", 200, 2, 4, 99).unwrap();
    let sources: Vec<Vec<u8>> = held_out.iter().map(|p| p.source.clone()).collect();
    let targets: Vec<Vec<u8>> = held_out.iter().map(|p| p.target.clone()).collect();
    let decoded = crema::seq2seq::greedy_decode(&mut dnet, &sources, 6).unwrap();
    let acc = crema::seq2seq::exact_match(&decoded, &targets);
    let copy = crema::seq2seq::exact_match(&sources, &targets);
    assert!(copy < 0.15, "copy baseline {copy}");
    assert!(
        acc > copy + 0.4,
        "exact match {acc} vs copy baseline {copy}"
    );
}
