//! A tiny character model built from YAML like models/char_lstm: the net-level gradient check
//! passes through TextData -> Embed -> LSTM -> RNN -> InnerProduct -> SoftmaxWithLoss, and plain
//! SGD on the net learns a periodic text far below its unigram entropy.

use crema::proto::Phase;
use crema::testing::GradientChecker;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn net_yaml(source: &str, t: usize, n: usize, second: &str) -> String {
    format!(
        r#"
name: tiny_char
layer:
  - {{ name: data, type: TextData, top: [data, cont, label],
      text_data_param: {{ source: '{source}', time_steps: {t}, batch_size: {n}, shuffle: true, vocab_size: 128 }} }}
  - {{ name: embed, type: Embed, bottom: data, top: embed,
      embed_param: {{ num_output: 6, input_dim: 128, weight_filler: {{ type: uniform, min: -0.5, max: 0.5 }} }} }}
  - {{ name: lstm1, type: LSTM, bottom: [embed, cont], top: lstm1,
      recurrent_param: {{ num_output: 12, weight_filler: {{ type: uniform, min: -0.3, max: 0.3 }} }} }}
  - {{ name: rec2, type: {second}, bottom: [lstm1, cont], top: rec2,
      recurrent_param: {{ num_output: 12, weight_filler: {{ type: uniform, min: -0.3, max: 0.3 }} }} }}
  - {{ name: predict, type: InnerProduct, bottom: rec2, top: predict,
      inner_product_param: {{ num_output: 128, axis: 2, weight_filler: {{ type: uniform, min: -0.3, max: 0.3 }} }} }}
  - {{ name: loss, type: SoftmaxWithLoss, bottom: [predict, label], top: loss, softmax_param: {{ axis: 2 }} }}
"#
    )
}

fn text_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("text.txt");
    std::fs::write(&path, "the cat sat. ".repeat(40)).unwrap();
    path.display().to_string()
}

#[test]
fn net_gradients_pass() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = net_yaml(&text_file(&dir), 4, 2, "RNN");
    let param = crema::spec::from_yaml_str(&yaml, "tiny").unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = crema::Net::for_phase(&param, Phase::Train, &mut rng).unwrap();
    net.forward().unwrap();
    let checker = GradientChecker {
        max_per_blob: Some(30),
        ..Default::default()
    };
    let reports = net.check_gradients(&checker).unwrap();
    let names: Vec<&str> = reports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["embed", "lstm1", "rec2", "predict", "loss"]);
    for (name, r) in &reports {
        assert!(r.ok(), "{name}: {:?}", r.failures);
    }
}

#[test]
fn sgd_learns_a_periodic_text() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = net_yaml(&text_file(&dir), 13, 4, "LSTM");
    let param = crema::spec::from_yaml_str(&yaml, "tiny").unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut net = crema::Net::for_phase(&param, Phase::Train, &mut rng).unwrap();
    // Unigram entropy of "the cat sat. " (13 bytes: t x3, space x3, a x2, others x1) in nats.
    let counts = [3.0f64, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    let unigram: f64 = counts.iter().map(|c| -(c / 13.0) * (c / 13.0).ln()).sum();
    let mut last = 0.0;
    for _ in 0..400 {
        net.clear_param_diffs();
        last = net.forward_backward().unwrap();
        for p in net.params_mut() {
            let (data, diff) = (&mut p.data, &p.diff);
            data.iter_mut().zip(diff).for_each(|(w, d)| *w -= 2.0 * d);
        }
    }
    assert!(
        (last as f64) < 0.5 * unigram,
        "loss {last} vs unigram entropy {unigram}"
    );
}
