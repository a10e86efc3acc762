//! `crema check --gradients` passes on models/gradcheck/net.yaml, a small net that combines
//! grouped+dilated+strided convolution, AVE pooling with pad, LRN, Concat, Eltwise,
//! BatchNorm+Scale, PReLU and Deconvolution, each layer and the whole net; and
//! models/gradcheck/max.yaml, whose max layers have near-ties.

use std::process::Command;

#[test]
fn gradcheck_net_passes_through_the_binary() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .current_dir(root)
        .args([
            "check",
            "--model",
            "models/gradcheck/net.yaml",
            "--gradients",
            "--json",
        ])
        .output()
        .expect("run crema");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crema check failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["blobs"]["deconv"], serde_json::json!([2, 4, 8, 8]));
    assert_eq!(v["blobs"]["cat"], serde_json::json!([2, 8, 4, 4]));
    let grads = v["gradients"].as_array().expect("gradients list");
    let names: Vec<&str> = grads.iter().filter_map(|g| g["layer"].as_str()).collect();
    for l in [
        "conv1", "pool1", "norm1", "cat", "elt", "bn", "scale", "prelu", "deconv", "ip1", "ip2",
        "sum", "loss", "(net)",
    ] {
        assert!(names.contains(&l), "layer {l} was not checked: {names:?}");
    }
    for g in grads {
        assert_eq!(g["ok"], serde_json::json!(true), "{g}");
    }
}

/// models/gradcheck/max.yaml: Eltwise MAX of two 2x8x9x9 blobs, then MAX pooling. With every
/// value checked, central differences straddle a change of winner dozens of times (max
/// relative error 0.81 in `max`, 0.010 in `pool` and 0.027 for the whole net under the plain
/// rule); the checker recognises those steps and the correct net passes.
#[test]
fn max_layers_with_near_ties_pass_per_layer_and_as_a_whole() {
    use crema::testing::GradientChecker;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let param = crema::spec::load_net(root.join("models/gradcheck/max.yaml")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1701);
    let mut net = crema::Net::for_phase(&param, crema::proto::Phase::Train, &mut rng).unwrap();
    for v in net.blob_mut("data").unwrap().data.iter_mut() {
        *v = StandardNormal.sample(&mut rng);
    }
    net.blob_mut("label").unwrap().data = vec![1.0, 3.0];
    let checker = GradientChecker::default();
    let reports = net.check_gradients(&checker).unwrap();
    for (name, r) in &reports {
        assert!(r.ok(), "{name}: {:?}", r.failures);
        assert!(r.max_rel_error < 1e-3, "{name}: {r:?}");
        if name == "max" || name == "pool" {
            // Nearly every value is still compared (most straddles pass at a smaller step).
            assert!(r.checked > 1250, "{name}: {r:?}");
        }
    }
    let whole = net.check_net_gradients(&checker).unwrap();
    assert!(whole.ok(), "{:?}", whole.failures);
    assert!(whole.checked > 1000, "{whole:?}");
}

#[test]
fn max_net_passes_through_the_binary_with_a_net_row() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .current_dir(root)
        .args([
            "check",
            "--model",
            "models/gradcheck/max.yaml",
            "--gradients",
            "--json",
        ])
        .output()
        .expect("run crema");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crema check failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["blobs"]["m"], serde_json::json!([2, 8, 9, 9]));
    assert_eq!(v["blobs"]["pool"], serde_json::json!([2, 8, 4, 4]));
    let grads = v["gradients"].as_array().expect("gradients list");
    let names: Vec<&str> = grads.iter().filter_map(|g| g["layer"].as_str()).collect();
    assert_eq!(
        names,
        ["conv_a", "conv_b", "max", "pool", "ip", "loss", "(net)"]
    );
    for g in grads {
        assert_eq!(g["ok"], serde_json::json!(true), "{g}");
    }
}
