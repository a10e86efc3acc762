//! `crema convert` end to end: the LMDBs and LevelDBs it writes are read back by the `Data` layer with the
//! same pixels and labels; mean files; IDX to PNG; errors name the file.

use crema::data::idx::IdxDataset;
use crema::data::image_list::{read_image, Decode};
use crema::data::Dataset;
use crema::testing::Harness;
use std::path::Path;
use std::process::Command;

const IMAGES: &str = "../shared/data/mnist/t10k-first1000-images-idx3-ubyte";
const LABELS: &str = "../shared/data/mnist/t10k-first1000-labels-idx1-ubyte";
const PHOTOS: &str = "../shared/data/images/";

fn convert(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_crema"))
        .arg("convert")
        .args(args)
        .output()
        .expect("run crema");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn data_layer(db: &Path, batch: usize, extra: &str) -> Harness {
    let y = format!(
        "type: Data\ntop: [data, label]\nphase: TEST\ndata_param: {{ source: '{}', batch_size: \
         {batch}, backend: LMDB }}{extra}",
        db.display()
    );
    Harness::new(&y, vec![]).unwrap()
}

#[test]
fn idx_to_lmdb_reads_back_identically_and_mean_matches() {
    assert!(Path::new(IMAGES).exists(), "{IMAGES} is missing");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mnist_lmdb");
    let (rc, out, err) = convert(&[
        "--idx",
        IMAGES,
        "--idx-labels",
        LABELS,
        "--out",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["records"], 1000);
    let ds = IdxDataset::open(IMAGES, Some(Path::new(LABELS))).unwrap();
    let mut h = data_layer(&db, 100, "");
    for b in 0..10 {
        h.forward().unwrap();
        for k in 0..100 {
            let s = ds.get(b * 100 + k).unwrap();
            assert_eq!(
                &h.top[0].data[k * 784..(k + 1) * 784],
                &s.data[..],
                "record {}",
                b * 100 + k
            );
            assert_eq!(h.top[1].data[k], s.label as f32);
        }
    }

    // Mean of the LMDB equals the mean of the IDX file.
    let m1 = dir.path().join("lmdb.binaryproto");
    let m2 = dir.path().join("idx.binaryproto");
    assert_eq!(
        convert(&[
            "--compute-mean",
            db.to_str().unwrap(),
            "--out",
            m1.to_str().unwrap()
        ])
        .0,
        0
    );
    assert_eq!(
        convert(&["--compute-mean", IMAGES, "--out", m2.to_str().unwrap()]).0,
        0
    );
    let (a, b) = (
        crema::data::mean::read_mean(&m1).unwrap(),
        crema::data::mean::read_mean(&m2).unwrap(),
    );
    assert_eq!(a.shape, [1, 28, 28]);
    crema::testing::assert_close(&a.data, &b.data, 1e-3);
    // ... and subtracting it through transform_param centres the data.
    let mut h = data_layer(
        &db,
        1000,
        &format!("\ntransform_param: {{ mean_file: '{}' }}", m1.display()),
    );
    h.forward().unwrap();
    let avg = h.top[0].data.iter().map(|&v| v as f64).sum::<f64>() / h.top[0].data.len() as f64;
    assert!(avg.abs() < 1e-3, "{avg}");

    // Existing output is refused.
    let (rc, _, err) = convert(&["--idx", IMAGES, "--out", db.to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert!(err.contains("already exists"), "{err}");
}

/// Pixel values as an 8-bit image stores them.
fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.round().clamp(0.0, 255.0)).collect()
}

#[test]
fn image_list_to_lmdb_raw_encoded_gray_shuffled() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(
        &list,
        "chelsea.png 0\ncoffee.png 1\nrocket.jpg 2\nfish-bike.jpg 3\n",
    )
    .unwrap();
    let l = list.to_str().unwrap();
    let raw = dir.path().join("raw");
    let (rc, _, err) = convert(&[
        "--list",
        l,
        "--root",
        PHOTOS,
        "--out",
        raw.to_str().unwrap(),
        "--resize-height",
        "24",
        "--resize-width",
        "32",
    ]);
    assert_eq!(rc, 0, "{err}");
    let mut h = data_layer(&raw, 4, "");
    h.forward().unwrap();
    assert_eq!(h.top[0].shape, vec![4, 3, 24, 32]);
    assert_eq!(h.top[1].data, vec![0., 1., 2., 3.]);
    let want = read_image(
        format!("{PHOTOS}rocket.jpg"),
        Decode {
            color: Some(true),
            resize: Some((24, 32)),
        },
    )
    .unwrap();
    // The resize is bilinear in floats; a raw Datum stores bytes, so the values are rounded
    // (as Caffe's convert_imageset stores cv::resize's 8-bit output).
    assert_eq!(
        &h.top[0].data[2 * 3 * 24 * 32..3 * 3 * 24 * 32],
        &rounded(&want.data)[..]
    );

    // Encoded, grey, shuffled: same pixel content per label, PNG is lossless.
    let enc = dir.path().join("enc");
    let (rc, _, err) = convert(&[
        "--list",
        l,
        "--root",
        PHOTOS,
        "--out",
        enc.to_str().unwrap(),
        "--encoded",
        "--encode-type",
        "png",
        "--gray",
        "--shuffle",
        "--resize-height",
        "16",
        "--resize-width",
        "16",
    ]);
    assert_eq!(rc, 0, "{err}");
    let mut h = data_layer(&enc, 4, "");
    h.forward().unwrap();
    assert_eq!(h.top[0].shape, vec![4, 1, 16, 16]);
    let mut labels = h.top[1].data.clone();
    labels.sort_by(f32::total_cmp);
    assert_eq!(labels, vec![0., 1., 2., 3.]);
    let k = h.top[1].data.iter().position(|&v| v == 1.0).unwrap();
    let want = read_image(
        format!("{PHOTOS}coffee.png"),
        Decode {
            color: Some(false),
            resize: Some((16, 16)),
        },
    )
    .unwrap();
    assert_eq!(
        &h.top[0].data[k * 256..(k + 1) * 256],
        &rounded(&want.data)[..]
    );

    // Encoded without changes stores the original file bytes.
    let orig = dir.path().join("orig");
    assert_eq!(
        convert(&[
            "--list",
            l,
            "--root",
            PHOTOS,
            "--out",
            orig.to_str().unwrap(),
            "--encoded"
        ])
        .0,
        0
    );
    let ds = crema::data::lmdb::LmdbDataset::open(&orig, Decode::default()).unwrap();
    assert_eq!(
        ds.datum(2).unwrap().data(),
        &std::fs::read(format!("{PHOTOS}rocket.jpg")).unwrap()[..]
    );
}

#[test]
fn idx_to_png_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("png");
    let (rc, _, err) = convert(&[
        "--idx-to-png",
        IMAGES,
        "--idx-labels",
        LABELS,
        "--first",
        "2",
        "--count",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    let ds = IdxDataset::open(IMAGES, Some(Path::new(LABELS))).unwrap();
    let s = read_image(out.join("00002_label1.png"), Decode::default()).unwrap();
    assert_eq!(s.data, ds.get(2).unwrap().data);
    let list = std::fs::read_to_string(out.join("list.txt")).unwrap();
    assert_eq!(list.lines().count(), 3);

    let bad = dir.path().join("truncated-idx3");
    std::fs::write(&bad, &std::fs::read(IMAGES).unwrap()[..5000]).unwrap();
    let (rc, _, err) = convert(&[
        "--compute-mean",
        bad.to_str().unwrap(),
        "--out",
        "/tmp/x.binaryproto",
    ]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("truncated-idx3") && err.contains("truncated"),
        "{err}"
    );
    let (rc, _, err) = convert(&["--out", "x"]);
    assert_eq!(rc, 1, "{err}");
    let list = dir.path().join("l.txt");
    std::fs::write(&list, "nothere.jpg 1\n").unwrap();
    let (rc, _, err) = convert(&[
        "--list",
        list.to_str().unwrap(),
        "--out",
        dir.path().join("d").to_str().unwrap(),
    ]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("nothere.jpg") && err.contains("line 1"),
        "{err}"
    );
}

const FASHION: &str = "/usr/share/datasets/fashion-mnist/";

/// Every learned layer's name and blobs.
type Weights = Vec<(String, Vec<Vec<f32>>)>;

/// Weights of every layer of a `.caffemodel`, by layer name.
fn weights(model: &Path) -> Weights {
    use prost::Message;
    let bytes = std::fs::read(model).unwrap();
    let net = crema::proto::NetParameter::decode(bytes.as_slice()).unwrap();
    net.layer
        .iter()
        .filter(|l| !l.blobs.is_empty())
        .map(|l| {
            (
                l.name().to_string(),
                l.blobs.iter().map(|b| b.data.clone()).collect(),
            )
        })
        .collect()
}

/// Trains a small LeNet for 100 iterations (batch 20: the first 2000 images, no shuffle) from a
/// `Data` layer on `db` and returns the final weights and the last displayed loss.
fn train_from(dir: &Path, name: &str, db: &Path, backend: &str) -> (Weights, f64) {
    let net = format!(
        r#"name: small_lenet
layer:
  - name: data
    type: Data
    top: [data, label]
    transform_param: {{ scale: 0.00390625 }}
    data_param: {{ source: '{}', batch_size: 20{backend} }}
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    convolution_param: {{ num_output: 8, kernel_size: 5, weight_filler: {{ type: xavier }} }}
  - {{ name: pool1, type: Pooling, bottom: conv1, top: pool1, pooling_param: {{ pool: MAX, kernel_size: 2, stride: 2 }} }}
  - name: ip1
    type: InnerProduct
    bottom: pool1
    top: ip1
    inner_product_param: {{ num_output: 32, weight_filler: {{ type: xavier }} }}
  - {{ name: relu1, type: ReLU, bottom: ip1, top: ip1 }}
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: ip2
    inner_product_param: {{ num_output: 10, weight_filler: {{ type: xavier }} }}
  - {{ name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss }}
"#,
        db.display()
    );
    std::fs::write(dir.join(format!("{name}.yaml")), net).unwrap();
    let solver = dir.join(format!("{name}_solver.yaml"));
    std::fs::write(
        &solver,
        format!(
            "net: {name}.yaml\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n\
             lr_policy: fixed\nmax_iter: 100\ndisplay: 100\nrandom_seed: 7\n\
             snapshot_prefix: {name}\n"
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["train", "--solver", solver.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let loss = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["loss"].as_f64())
        .next_back()
        .unwrap();
    (
        weights(&dir.join(format!("{name}_iter_100.caffemodel"))),
        loss,
    )
}

/// An LMDB and a LevelDB made by `crema convert` from the same Fashion-MNIST images hold the same
/// records in the same order, so the same net trains bit for bit the same from either.
#[test]
fn fashion_mnist_lmdb_and_leveldb_train_identically() {
    let images = format!("{FASHION}t10k-images-idx3-ubyte.gz");
    let labels = format!("{FASHION}t10k-labels-idx1-ubyte.gz");
    if !Path::new(&images).exists() {
        eprintln!("{images} is missing (Debian's dataset-fashion-mnist); skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lm = dir.path().join("fashion_lmdb");
    let lv = dir.path().join("fashion_leveldb");
    for (db, backend) in [(&lm, "lmdb"), (&lv, "leveldb")] {
        let (rc, out, err) = convert(&[
            "--idx",
            &images,
            "--idx-labels",
            &labels,
            "--out",
            db.to_str().unwrap(),
            "--backend",
            backend,
            "--json",
        ]);
        assert_eq!(rc, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["records"], 10000);
    }
    assert!(lm.join("data.mdb").is_file() && lv.join("CURRENT").is_file());

    // Both read back as the IDX file (records 0, 1999, 9999).
    let ds = IdxDataset::open(&images, Some(Path::new(&labels))).unwrap();
    let a = crema::data::lmdb::LmdbDataset::open(&lm, Decode::default()).unwrap();
    let b = crema::data::leveldb::LevelDbDataset::open(&lv, Decode::default()).unwrap();
    assert_eq!((a.len(), b.len()), (10000, 10000));
    for i in [0, 1999, 9999] {
        let s = ds.get(i).unwrap();
        assert_eq!(a.get(i).unwrap(), s);
        assert_eq!(b.get(i).unwrap(), s);
    }
    drop((a, b));

    // --compute-mean reads either and gives the same mean.
    let mut means = Vec::new();
    for db in [&lm, &lv] {
        let m = dir.path().join("mean.binaryproto");
        let _ = std::fs::remove_file(&m);
        let (rc, out, err) = convert(&[
            "--compute-mean",
            db.to_str().unwrap(),
            "--out",
            m.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(rc, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["records"], 10000);
        means.push((v["channel_means"].clone(), std::fs::read(&m).unwrap()));
    }
    assert_eq!(means[0], means[1]);
    // The pixel mean of the Fashion-MNIST test images, from the IDX file directly.
    let mut sum = 0f64;
    for i in 0..ds.len() {
        sum += ds
            .get(i)
            .unwrap()
            .data
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>();
    }
    let want = sum / (10000.0 * 784.0);
    let got = means[0].0[0].as_f64().unwrap();
    assert!((got - want).abs() < 1e-3, "{got} vs {want}");

    // The default backend (unset) is LevelDB, as in Caffe.
    let (w_lv, loss_lv) = train_from(dir.path(), "from_leveldb", &lv, "");
    let (w_lm, loss_lm) = train_from(dir.path(), "from_lmdb", &lm, ", backend: LMDB");
    assert_eq!(
        w_lv.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        ["conv1", "ip1", "ip2"]
    );
    assert_eq!(w_lv, w_lm, "weights differ");
    assert_eq!(loss_lv, loss_lm);
    // It learned something: the loss fell below ln(10) = 2.30 of a uniform guess (measured 1.67).
    assert!(loss_lv < 2.0, "{loss_lv}");
}

/// `--list --backend leveldb`: the same records in the same (shuffled) order as the LMDB, encoded
/// or not.
#[test]
fn image_list_to_leveldb_matches_lmdb() {
    use crema::data::leveldb::LevelDbDataset;
    use crema::data::lmdb::LmdbDataset;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "chelsea.png 0\ncoffee.png 1\nrocket.jpg 2\n").unwrap();
    for encoded in [false, true] {
        let mut outs = Vec::new();
        for backend in ["lmdb", "leveldb"] {
            let out = dir.path().join(format!("{backend}_{encoded}"));
            let mut args = vec![
                "--list",
                list.to_str().unwrap(),
                "--root",
                PHOTOS,
                "--out",
                out.to_str().unwrap(),
                "--backend",
                backend,
                "--shuffle",
            ];
            if encoded {
                args.push("--encoded");
            } else {
                args.extend(["--resize-height", "24", "--resize-width", "32"]);
            }
            let (rc, _, err) = convert(&args);
            assert_eq!(rc, 0, "{err}");
            outs.push(out);
        }
        let a = LmdbDataset::open(&outs[0], Decode::default()).unwrap();
        let b = LevelDbDataset::open(&outs[1], Decode::default()).unwrap();
        assert_eq!((a.len(), b.len()), (3, 3));
        for i in 0..3 {
            assert_eq!(a.datum(i).unwrap(), b.datum(i).unwrap(), "record {i}");
        }
        // The shuffled order is the same, and every label is there once.
        let mut labels: Vec<i32> = (0..3).map(|i| b.get(i).unwrap().label).collect();
        labels.sort();
        assert_eq!(labels, [0, 1, 2]);
        if !encoded {
            assert_eq!(b.get(0).unwrap().shape(), [3, 24, 32]);
        } else {
            assert!(b.datum(0).unwrap().encoded());
        }
    }
}
