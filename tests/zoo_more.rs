//! The zoo models cifar10_full, alexnet, googlenet and vgg16 build (TEST phase) with Caffe's
//! blob shapes.

use crema::proto::Phase;
use crema::Net;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;

/// Builds `models/<rel>` for TEST; with `batch`, the Input blobs' first dim is replaced first
/// (keeps the big nets' activations small; shapes past axis 0 do not depend on it).
fn build(rel: &str, batch: Option<i64>) -> Net {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(rel);
    let mut param = crema::spec::load_net(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    if let Some(n) = batch {
        for l in param.layer.iter_mut() {
            if let Some(ip) = l.input_param.as_mut() {
                for s in ip.shape.iter_mut() {
                    s.dim[0] = n;
                }
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(1);
    Net::for_phase(&param, Phase::Test, &mut rng).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn assert_shapes(net: &Net, expect: &[(&str, &[usize])]) {
    for (name, shape) in expect {
        let b = net
            .blob(name)
            .unwrap_or_else(|| panic!("blob `{name}` missing"));
        assert_eq!(b.shape, *shape, "blob `{name}`");
    }
}

#[test]
fn cifar10_full_shapes() {
    let net = build("cifar10_full/net.yaml", None);
    assert_shapes(
        &net,
        &[
            ("data", &[100, 3, 32, 32]),
            ("label", &[100]),
            ("conv1", &[100, 32, 32, 32]),
            ("pool1", &[100, 32, 16, 16]),
            ("norm1", &[100, 32, 16, 16]),
            ("conv2", &[100, 32, 16, 16]),
            ("pool2", &[100, 32, 8, 8]),
            ("norm2", &[100, 32, 8, 8]),
            ("conv3", &[100, 64, 8, 8]),
            ("pool3", &[100, 64, 4, 4]),
            ("ip1", &[100, 10]),
            ("accuracy", &[]),
            ("loss", &[]),
        ],
    );
    let net = build("cifar10_full/deploy.yaml", None);
    assert_shapes(&net, &[("pool3", &[1, 64, 4, 4]), ("prob", &[1, 10])]);
    assert_eq!(net.param_count(), 89_578);
}

#[test]
fn alexnet_shapes() {
    let net = build("alexnet/deploy.yaml", Some(2));
    assert_shapes(
        &net,
        &[
            ("data", &[2, 3, 227, 227]),
            ("conv1", &[2, 96, 55, 55]),
            ("norm1", &[2, 96, 55, 55]),
            ("pool1", &[2, 96, 27, 27]),
            ("conv2", &[2, 256, 27, 27]),
            ("norm2", &[2, 256, 27, 27]),
            ("pool2", &[2, 256, 13, 13]),
            ("conv3", &[2, 384, 13, 13]),
            ("conv4", &[2, 384, 13, 13]),
            ("conv5", &[2, 256, 13, 13]),
            ("pool5", &[2, 256, 6, 6]),
            ("fc6", &[2, 4096]),
            ("fc7", &[2, 4096]),
            ("fc8", &[2, 1000]),
            ("prob", &[2, 1000]),
        ],
    );
    assert_eq!(net.param_count(), 60_965_224);
}

#[test]
fn googlenet_shapes() {
    let net = build("googlenet/deploy.yaml", Some(1));
    assert_shapes(
        &net,
        &[
            ("conv1/7x7_s2", &[1, 64, 112, 112]),
            ("pool1/3x3_s2", &[1, 64, 56, 56]),
            ("conv2/3x3", &[1, 192, 56, 56]),
            ("pool2/3x3_s2", &[1, 192, 28, 28]),
            ("inception_3a/output", &[1, 256, 28, 28]),
            ("inception_3b/output", &[1, 480, 28, 28]),
            ("pool3/3x3_s2", &[1, 480, 14, 14]),
            ("inception_4a/output", &[1, 512, 14, 14]),
            ("inception_4b/output", &[1, 512, 14, 14]),
            ("inception_4c/output", &[1, 512, 14, 14]),
            ("inception_4d/output", &[1, 528, 14, 14]),
            ("inception_4e/output", &[1, 832, 14, 14]),
            ("pool4/3x3_s2", &[1, 832, 7, 7]),
            ("inception_5a/output", &[1, 832, 7, 7]),
            ("inception_5b/output", &[1, 1024, 7, 7]),
            ("pool5/7x7_s1", &[1, 1024, 1, 1]),
            ("loss3/classifier", &[1, 1000]),
            ("prob", &[1, 1000]),
        ],
    );
}

/// VGG16's conv trunk (everything up to pool5) with Caffe's shapes; the full net (fc6 alone is
/// 102.8M weights) is `vgg16_full_shapes`, ignored by default because it allocates 1.1 GB.
#[test]
fn vgg16_trunk_shapes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vgg16/deploy.yaml");
    let mut param = crema::spec::load_net(&path).unwrap();
    let fc: Vec<(String, u32)> = param
        .layer
        .iter()
        .filter_map(|l| {
            l.inner_product_param
                .as_ref()
                .map(|p| (l.name().to_string(), p.num_output()))
        })
        .collect();
    assert_eq!(
        fc,
        vec![
            ("fc6".to_string(), 4096),
            ("fc7".to_string(), 4096),
            ("fc8".to_string(), 1000)
        ]
    );
    let cut = param.layer.iter().position(|l| l.name() == "fc6").unwrap();
    param.layer.truncate(cut);
    for l in param.layer.iter_mut() {
        if let Some(ip) = l.input_param.as_mut() {
            ip.shape[0].dim[0] = 1;
        }
    }
    let mut rng = StdRng::seed_from_u64(1);
    let net = Net::for_phase(&param, Phase::Test, &mut rng).unwrap();
    assert_shapes(
        &net,
        &[
            ("conv1_2", &[1, 64, 224, 224]),
            ("pool1", &[1, 64, 112, 112]),
            ("pool2", &[1, 128, 56, 56]),
            ("conv3_3", &[1, 256, 56, 56]),
            ("pool3", &[1, 256, 28, 28]),
            ("pool4", &[1, 512, 14, 14]),
            ("conv5_3", &[1, 512, 14, 14]),
            ("pool5", &[1, 512, 7, 7]),
        ],
    );
    // 13 conv layers: 14,714,688 values; fc6/fc7/fc8 add 123,642,856.
    assert_eq!(net.param_count(), 14_714_688);
}

#[test]
#[ignore = "allocates 1.1 GB of weights (about 4 s); run with --ignored"]
fn vgg16_full_shapes() {
    let net = build("vgg16/deploy.yaml", Some(1));
    assert_shapes(
        &net,
        &[
            ("pool5", &[1, 512, 7, 7]),
            ("fc6", &[1, 4096]),
            ("fc7", &[1, 4096]),
            ("fc8", &[1, 1000]),
            ("prob", &[1, 1000]),
        ],
    );
    assert_eq!(net.param_count(), 138_357_544);
}
