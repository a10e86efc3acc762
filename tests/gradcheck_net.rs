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

/// models/gradcheck/conv3d.yaml: 3-D Convolution, AVE pooling (crema's 3-D extension) and
/// Deconvolution, then a 1-D Convolution,
/// built by the net builder from YAML; shapes follow Caffe's `(in + 2p - (d(k-1)+1)) / s + 1`
/// per axis, and every layer and the whole net pass the gradient check.
#[test]
fn conv3d_net_builds_runs_and_passes_the_gradient_check() {
    use crema::testing::GradientChecker;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let param = crema::spec::load_net(root.join("models/gradcheck/conv3d.yaml")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut net = crema::Net::for_phase(&param, crema::proto::Phase::Train, &mut rng).unwrap();
    for v in net.blob_mut("data").unwrap().data.iter_mut() {
        *v = StandardNormal.sample(&mut rng);
    }
    net.blob_mut("label").unwrap().data = vec![0.0, 2.0];
    let loss = net.forward().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    let shape = |n: &str| net.blob(n).unwrap().shape.clone();
    // D: (5+2-3)/2+1 = 3, H: (6+2-5)/1+1 = 4, W: (4+2-2)/1+1 = 5.
    assert_eq!(shape("conv3d"), [2, 4, 3, 4, 5]);
    // AVE 2, stride 1, pad 1: (n + 2 - 2) / 1 + 1 = n + 1 per axis.
    assert_eq!(shape("pool3d"), [2, 4, 4, 5, 6]);
    // Deconvolution stride [1, 2, 1], kernel [1, 2, 1]: 4, 2*4 + 2 = 10, 6.
    assert_eq!(shape("deconv3d"), [2, 2, 4, 10, 6]);
    // (240 + 4 - 9) / 4 + 1 = 59.
    assert_eq!(shape("conv1d"), [2, 3, 59]);
    let weights: Vec<Vec<usize>> = net.params().iter().map(|p| p.shape.clone()).collect();
    assert_eq!(weights[0], [4, 1, 3, 3, 2]);
    // Deconvolution: [C_in, num_output / group, k...].
    assert_eq!(weights[2], [4, 2, 1, 2, 1]);
    assert_eq!(weights[4], [3, 2, 5]);
    // The 5-D weights round-trip through a .caffemodel (BlobProto.shape, 5 dims) and load by
    // layer name into a net filled differently, which then computes the same loss.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv3d.caffemodel");
    crema::caffe::caffemodel::write(&path, &net.to_proto(false)).unwrap();
    let saved = crema::caffe::caffemodel::read(&path).unwrap();
    let dims = |li: usize| saved.layer[li].blobs[0].shape.clone().unwrap().dim;
    assert_eq!(dims(1), [4, 1, 3, 3, 2]);
    assert_eq!(dims(5), [3, 2, 5]);
    let mut other = crema::Net::for_phase(
        &param,
        crema::proto::Phase::Train,
        &mut rand::rngs::StdRng::seed_from_u64(8),
    )
    .unwrap();
    other.blob_mut("data").unwrap().data = net.blob("data").unwrap().data.clone();
    other.blob_mut("label").unwrap().data = vec![0.0, 2.0];
    assert_ne!(other.forward().unwrap(), loss);
    other
        .copy_trained_layers_from(&saved, "conv3d.caffemodel")
        .unwrap();
    assert_eq!(other.forward().unwrap(), loss);
    let checker = GradientChecker::default();
    for (name, r) in &net.check_gradients(&checker).unwrap() {
        assert!(r.ok(), "{name}: {:?}", r.failures);
    }
    let whole = net.check_net_gradients(&checker).unwrap();
    assert!(whole.ok(), "{:?}", whole.failures);
}
