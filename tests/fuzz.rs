//! Fuzzing every reader of outside bytes (YAML model and solver, prototxt, caffemodel current and
//! V1, solverstate, binaryproto mean files, IDX plain and gzipped, LMDB `Datum` records, LevelDB
//! table files, images, .npy, TextData's text) with the mutation engine in `fuzz/engine.rs`, seeded from the real
//! files in `../shared/data`, `models/` and small files made here. A panic, an allocation above
//! 512 MiB or an input past the per-input budget fails the run, with the input saved.
//!
//! The CI pass runs a few thousand inputs per reader inside `cargo test`; the long pass is
//! `CREMA_FUZZ_INPUTS=100000 cargo test --release --test fuzz` (`scripts/fuzz.sh`).

#[path = "fuzz/engine.rs"]
mod engine;

use crema::caffe;
use crema::data::image_list::{decode_image, Decode};
use crema::data::{idx, leveldb, lmdb, Dataset};
use crema::proto::{BlobProto, BlobShape, Datum, NetParameter, SolverParameter};
use crema::{Blob, Net};
use engine::{fuzz, inputs};
use prost::Message;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: engine::BoundedAlloc = engine::BoundedAlloc;

fn shared(rel: &str) -> PathBuf {
    let p = Path::new("../shared/data").join(rel);
    assert!(
        p.exists(),
        "fuzz seed {} is missing: the fuzz tests need ../shared/data",
        p.display()
    );
    p
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn lenet_deploy() -> Net {
    let param = caffe::load_net_prototxt(shared("caffe/lenet_v2/lenet.prototxt")).unwrap();
    let mut rng = rand::SeedableRng::seed_from_u64(1);
    Net::for_phase(&param, crema::proto::Phase::Test, &mut rng).unwrap()
}

#[test]
fn yaml_model() {
    let seeds = files(Path::new("models"), ".yaml")
        .into_iter()
        .filter(|p| !p.ends_with("solver.yaml"))
        .map(read)
        .collect();
    fuzz("yaml_model", seeds, inputs(3000), |b| {
        let text = String::from_utf8_lossy(b);
        crema::spec::from_yaml_str::<NetParameter>(&text, "fuzz.yaml")
            .and_then(|mut net| crema::spec::upgrade_inputs(&mut net))
            .is_ok()
    });
}

#[test]
fn yaml_solver() {
    let seeds = files(Path::new("models"), "solver.yaml")
        .into_iter()
        .map(read)
        .collect();
    fuzz("yaml_solver", seeds, inputs(3000), |b| {
        let text = String::from_utf8_lossy(b);
        crema::spec::from_yaml_str::<SolverParameter>(&text, "fuzz.yaml")
            .and_then(|mut s| crema::spec::upgrade_solver_type(&mut s))
            .is_ok()
    });
}

#[test]
fn prototxt() {
    let mut seeds: Vec<Vec<u8>> = files(&shared("prototxt"), ".prototxt")
        .into_iter()
        .chain(files(&shared("caffe"), ".prototxt"))
        .map(read)
        .collect();
    seeds.retain(|s| s.len() < 64 << 10);
    fuzz("prototxt", seeds, inputs(3000), |b| {
        caffe::parse_any(&String::from_utf8_lossy(b), "fuzz.prototxt").is_ok()
    });
}

#[test]
fn caffemodel() {
    // Current format, V1 format (legacy 4-D dims), and a small net of our own.
    let mut seeds: Vec<Vec<u8>> = [
        "caffe/lenet_v2/lenet_iter_10000.caffemodel",
        "caffe/lenet_v1/lenet_iter_5000.caffemodel",
        "caffe/mtcnn_det1/det1.caffemodel",
    ]
    .iter()
    .map(|f| read(shared(f)))
    .collect();
    let mut small = lenet_deploy().to_proto(false);
    for l in &mut small.layer {
        for b in &mut l.blobs {
            let n = b.data.len().min(8);
            b.data.truncate(n);
            b.shape = Some(BlobShape {
                dim: vec![n as i64],
            });
        }
    }
    seeds.push(small.encode_to_vec());
    let net = RefCell::new(lenet_deploy());
    fuzz("caffemodel", seeds, inputs(2000), |b| {
        let Ok(p) = caffe::caffemodel::decode(b, "fuzz.caffemodel") else {
            return false;
        };
        for l in &p.layer {
            for blob in &l.blobs {
                let _ = crema::blob::blob_from_proto(blob, "fuzz.caffemodel");
            }
        }
        net.borrow_mut()
            .copy_trained_layers_from(&p, "fuzz.caffemodel")
            .is_ok()
    });
}

#[test]
fn solverstate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shared("caffe/lenet_v1/lenet_iter_5000.caffemodel"),
        dir.path().join("lenet_iter_5000.caffemodel"),
    )
    .unwrap();
    let deploy = std::fs::canonicalize("models/lenet/deploy.yaml").unwrap();
    let solver_yaml = dir.path().join("solver.yaml");
    std::fs::write(
        &solver_yaml,
        format!(
            "net: {}\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: fixed\nmax_iter: 1\n\
             random_seed: 1\nsnapshot_prefix: own\n",
            deploy.display()
        ),
    )
    .unwrap();
    let mut solver = crema::solver::Solver::from_file(&solver_yaml).unwrap();
    let (_, own_state) = solver.snapshot().unwrap();
    let seeds = vec![
        read(shared("caffe/lenet_v1/lenet_iter_5000.solverstate")),
        read(own_state),
    ];
    let state = dir.path().join("fuzz.solverstate");
    let solver = RefCell::new(solver);
    fuzz("solverstate", seeds, inputs(1000), |b| {
        std::fs::write(&state, b).unwrap();
        solver.borrow_mut().restore(&state).is_ok()
    });
}

#[test]
fn binaryproto() {
    let nd = BlobProto {
        shape: Some(BlobShape { dim: vec![3, 4, 5] }),
        double_data: (0..60).map(|i| i as f64).collect(),
        ..Default::default()
    };
    let seeds = vec![
        read(shared("caffe/cifar10_quick_v1/mean.binaryproto")),
        nd.encode_to_vec(),
        crema::blob::blob_to_legacy_proto(&Blob::new(&[1, 2, 3, 2])).encode_to_vec(),
    ];
    fuzz("binaryproto", seeds, inputs(5000), |b| {
        caffe::decode_blob_proto(b, "fuzz.binaryproto")
            .and_then(|blob| crema::data::mean::mean_from_blob(blob, "fuzz.binaryproto"))
            .is_ok()
    });
}

fn gz(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx() {
    let images = read(shared("mnist/t10k-first1000-images-idx3-ubyte"));
    let labels = read(shared("mnist/t10k-first1000-labels-idx1-ubyte"));
    // The first 20 digits (the header's count patched), and a float32 rank-4 file.
    let mut few = images[..16 + 20 * 784].to_vec();
    few[4..8].copy_from_slice(&20u32.to_be_bytes());
    let mut f32s = vec![
        0u8, 0, 0x0D, 4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2,
    ];
    for v in 0..8 {
        f32s.extend_from_slice(&(v as f32 * 0.5).to_be_bytes());
    }
    let seeds = vec![gz(&few), few, labels.clone(), gz(&labels), f32s, images];
    fuzz("idx", seeds, inputs(2000), |b| {
        let Ok(ds) = idx::decode_idx(Path::new("fuzz-idx"), b)
            .and_then(|a| idx::IdxDataset::from_arrays(a, None))
        else {
            return false;
        };
        [0, ds.len() / 2, ds.len().saturating_sub(1)]
            .iter()
            .all(|&i| i >= ds.len() || ds.get(i).is_ok())
    });
}

/// Small images in every format crema reads, made from a real photo.
fn small_images() -> Vec<Vec<u8>> {
    let img = image::open(shared("caffe/cifar10_quick_v1/cat10.png"))
        .unwrap()
        .resize_exact(12, 9, image::imageops::FilterType::Triangle);
    let mut out = Vec::new();
    for fmt in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Bmp,
        image::ImageFormat::Gif,
        image::ImageFormat::Tiff,
        image::ImageFormat::WebP,
        image::ImageFormat::Pnm,
    ] {
        let mut c = std::io::Cursor::new(Vec::new());
        let rgb = if fmt == image::ImageFormat::Gif {
            image::DynamicImage::ImageRgba8(img.to_rgba8())
        } else {
            image::DynamicImage::ImageRgb8(img.to_rgb8())
        };
        rgb.write_to(&mut c, fmt).unwrap();
        out.push(c.into_inner());
    }
    let mut c = std::io::Cursor::new(Vec::new());
    img.to_luma8()
        .write_to(&mut c, image::ImageFormat::Png)
        .unwrap();
    out.push(c.into_inner());
    out.push(read(shared("caffe/cifar10_quick_v1/dog10.png")));
    out
}

#[test]
fn datum() {
    let raw = Datum {
        channels: Some(1),
        height: Some(3),
        width: Some(4),
        data: Some((0..12).collect()),
        label: Some(3),
        ..Default::default()
    };
    let floats = Datum {
        channels: Some(2),
        height: Some(2),
        width: Some(1),
        float_data: vec![0.5, 1.5, -2.0, 3.0],
        ..Default::default()
    };
    let mut seeds = vec![raw.encode_to_vec(), floats.encode_to_vec()];
    for img in small_images().into_iter().take(3) {
        let d = Datum {
            data: Some(img),
            encoded: Some(true),
            label: Some(1),
            ..Default::default()
        };
        seeds.push(d.encode_to_vec());
    }
    fuzz("datum", seeds, inputs(3000), |b| {
        Datum::decode(b)
            .is_ok_and(|d| lmdb::datum_to_sample(&d, Decode::default(), "fuzz record").is_ok())
    });
}

/// The table file of a small LevelDB (the rest of the directory kept): opening the set and reading
/// every record gives records or errors, never a panic or an allocation sized by a damaged
/// block handle.
#[test]
fn leveldb_table() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let mut w = leveldb::LevelDbWriter::create(&good).unwrap();
    for i in 0..40u8 {
        let d = Datum {
            channels: Some(1),
            height: Some(8),
            width: Some(8),
            data: Some((0..64).map(|k| k ^ i).collect()),
            label: Some(i32::from(i % 10)),
            ..Default::default()
        };
        w.put(format!("{i:08}").as_bytes(), &d).unwrap();
    }
    w.finish().unwrap();
    let mut template = Vec::new();
    let mut table = None;
    for f in std::fs::read_dir(&good).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_owned();
        if f.extension().is_some_and(|x| x == "ldb") {
            table = Some((name, read(&f)));
        } else if name != "LOCK" {
            template.push((name, read(&f)));
        }
    }
    let (table_name, seed) = table.expect("a table file");
    let db = dir.path().join("fuzzed");
    fuzz("leveldb_table", vec![seed], inputs(300), |b| {
        let _ = std::fs::remove_dir_all(&db);
        std::fs::create_dir(&db).unwrap();
        for (name, bytes) in &template {
            std::fs::write(db.join(name), bytes).unwrap();
        }
        std::fs::write(db.join(&table_name), b).unwrap();
        let Ok(ds) = leveldb::LevelDbDataset::open(&db, Decode::default()) else {
            return false;
        };
        (0..ds.len()).all(|i| ds.get(i).is_ok())
    });
}

#[test]
fn image() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.img");
    let mut seeds = small_images();
    seeds.push(huge_png_header());
    fuzz("image", seeds, inputs(2000), |b| {
        let gray = Decode {
            color: Some(false),
            resize: Some((7, 5)),
        };
        let colour = decode_image(b, Decode::default(), "fuzz image").is_ok();
        let _ = decode_image(b, gray, "fuzz image");
        std::fs::write(&file, b).unwrap();
        let _ = crema::data::photo::read(&file, Some(true), Default::default());
        colour
    });
}

/// A PNG whose header claims 100000 x 100000 pixels.
fn huge_png_header() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.to_be_bytes());
    // An IDAT of zlib-compressed zero rows, then the end.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 16]).unwrap();
    let idat = [b"IDAT".to_vec(), z.finish().unwrap()].concat();
    png.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    png.extend_from_slice(&idat);
    png.extend_from_slice(&crc32(&idat).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0]);
    png.extend_from_slice(b"IEND");
    png.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    png
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(b);
    c.sum()
}

#[test]
fn images_claiming_100000_pixels_a_side_are_refused() {
    let png = huge_png_header();
    let e = decode_image(&png, Decode::default(), "huge.png").unwrap_err();
    assert!(e.to_string().contains("huge.png"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.png");
    std::fs::write(&p, &png).unwrap();
    let e = crema::data::photo::read(&p, Some(true), Default::default()).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn npy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    caffe::npy::write_npy(
        &p,
        &Blob::from_data(&[2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-7, 6.0]).unwrap(),
    )
    .unwrap();
    let f4 = read(&p);
    let mut f8 = b"\x93NUMPY\x01\x00".to_vec();
    let dict = "{'descr': '>f8', 'fortran_order': False, 'shape': (3, 1), }";
    f8.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    f8.extend_from_slice(dict.as_bytes());
    for v in [0.5f64, 1.5, -2.0] {
        f8.extend_from_slice(&v.to_be_bytes());
    }
    fuzz("npy", vec![f4, f8], inputs(5000), |b| {
        caffe::npy::decode_npy(b, "fuzz.npy").is_ok()
    });
}

#[test]
fn text_data() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("fuzz.txt");
    let seeds = vec![
        read("README.md")[..4000].to_vec(),
        b"abcdefghijklmnop".to_vec(),
        b"In the beginning".to_vec(),
    ];
    let yaml = |shuffle: bool, vocab: u32| {
        format!(
            "type: TextData\ntop: [data, cont, label]\ntext_data_param: {{ source: '{}', \
             time_steps: 5, batch_size: 3, shuffle: {shuffle}, vocab_size: {vocab} }}",
            source.display()
        )
    };
    let params: Vec<_> = [(false, 128), (true, 256)]
        .iter()
        .map(|&(s, v)| crema::testing::layer_param_from_yaml(&yaml(s, v)).unwrap())
        .collect();
    fuzz("text_data", seeds, inputs(2000), |b| {
        std::fs::write(&source, b).unwrap();
        let mut accepted = false;
        for p in &params {
            let mut l = crema::layers::create(p).unwrap();
            let mut rng = rand::SeedableRng::seed_from_u64(2);
            let mut ctx = crema::layers::SetupCtx { rng: &mut rng };
            if l.setup(&[], &mut ctx).is_err() {
                continue;
            }
            accepted = true;
            let mut tops = [Blob::default(), Blob::default(), Blob::default()];
            let mut t: Vec<&mut Blob> = tops.iter_mut().collect();
            l.reshape(&[], &mut t).unwrap();
            for _ in 0..4 {
                l.forward(&[], &mut t, &mut []).unwrap();
            }
        }
        accepted
    });
}

#[test]
fn the_engine_reports_a_panicking_reader_with_the_input_saved() {
    if std::env::var("CREMA_FUZZ_REPLAY").is_ok() {
        return;
    }
    // A "reader" that panics on any input holding 0xff: the mutations reach one quickly.
    let seeds = vec![b"abcdefgh".to_vec()];
    let r = std::panic::catch_unwind(|| {
        fuzz("selftest", seeds, 200, |b| {
            assert!(!b.contains(&0xff), "found 0xff");
            true
        })
    });
    let msg = match r {
        Ok(_) => panic!("the engine missed every panic"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        msg.contains("found 0xff") && msg.contains("saved in"),
        "{msg}"
    );
    let saved = msg
        .split("saved in ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap();
    assert!(read(saved).contains(&0xff), "{saved}");
}
