//! The vision zoo models build and have Caffe's blob shapes.

use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;

fn shapes(path: &str, phase: Phase) -> Option<BTreeMap<String, Vec<usize>>> {
    let mut param = crema::spec::load_net(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let known = crema::layers::known_types();
    // In-place layers keep shapes: drop the ones whose type another branch provides (Dropout).
    param
        .layer
        .retain(|l| known.contains(&l.r#type()) || l.top.is_empty() || l.top != l.bottom);
    if let Some(l) = param.layer.iter().find(|l| !known.contains(&l.r#type())) {
        // Layers from other branches (Dropout) land when those branches merge.
        eprintln!(
            "skipping {path}: layer type {} is not registered yet",
            l.r#type()
        );
        return None;
    }
    let mut rng = StdRng::seed_from_u64(1);
    let net =
        crema::Net::for_phase(&param, phase, &mut rng).unwrap_or_else(|e| panic!("{path}: {e}"));
    Some(
        net.blobs()
            .map(|(n, b)| (n.to_string(), b.shape.clone()))
            .collect(),
    )
}

fn expect(got: &BTreeMap<String, Vec<usize>>, want: &[(&str, &[usize])]) {
    for (name, shape) in want {
        assert_eq!(
            got.get(*name).map(|v| v.as_slice()),
            Some(*shape),
            "blob {name}"
        );
    }
}

#[test]
fn lenet_deploy_has_caffes_shapes() {
    let s = shapes("models/lenet/deploy.yaml", Phase::Test).unwrap();
    expect(
        &s,
        &[
            ("data", &[64, 1, 28, 28]),
            ("conv1", &[64, 20, 24, 24]),
            ("pool1", &[64, 20, 12, 12]),
            ("conv2", &[64, 50, 8, 8]),
            ("pool2", &[64, 50, 4, 4]),
            ("ip1", &[64, 500]),
            ("prob", &[64, 10]),
        ],
    );
}

#[test]
fn cifar10_quick_has_caffes_shapes() {
    for (path, n) in [
        ("models/cifar10_quick/net.yaml", 100),
        ("models/cifar10_quick/deploy.yaml", 1),
    ] {
        let s = shapes(path, Phase::Test).unwrap();
        expect(
            &s,
            &[
                ("conv1", &[n, 32, 32, 32]),
                ("pool1", &[n, 32, 16, 16]),
                ("conv2", &[n, 32, 16, 16]),
                ("pool2", &[n, 32, 8, 8]),
                ("conv3", &[n, 64, 8, 8]),
                ("pool3", &[n, 64, 4, 4]),
                ("ip1", &[n, 64]),
                ("ip2", &[n, 10]),
            ],
        );
    }
    let s = shapes("models/cifar10_quick/net.yaml", Phase::Train).unwrap();
    assert_eq!(s["loss"], Vec::<usize>::new());
    assert!(!s.contains_key("accuracy"));
}

#[test]
fn caffenet_has_caffes_shapes() {
    let s = shapes("models/caffenet/deploy.yaml", Phase::Test).unwrap();
    expect(
        &s,
        &[
            ("conv1", &[10, 96, 55, 55]),
            ("pool1", &[10, 96, 27, 27]),
            ("norm1", &[10, 96, 27, 27]),
            ("conv2", &[10, 256, 27, 27]),
            ("pool2", &[10, 256, 13, 13]),
            ("conv3", &[10, 384, 13, 13]),
            ("conv4", &[10, 384, 13, 13]),
            ("conv5", &[10, 256, 13, 13]),
            ("pool5", &[10, 256, 6, 6]),
            ("fc6", &[10, 4096]),
            ("fc8", &[10, 1000]),
            ("prob", &[10, 1000]),
        ],
    );
}
