//! `Data`: Caffe's LevelDB and LMDB data sets of `Datum` records (raw uint8, `float_data`, or
//! encoded JPEG/PNG), `data_param` (`source`, `batch_size`, `backend: LEVELDB` (the default) or
//! `LMDB`, `rand_skip`, `prefetch`, `force_encoded_color`) and `transform_param`.

use super::loader::{merged_transform, LoaderLayer};
use super::Layer;
use crate::data::db::Backend;
use crate::data::image_list::Decode;
use crate::data::prefetch::{Loader, LoaderConfig};
use crate::data::transform::Transformer;
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// Creates `Data` from `data_param` and `transform_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.data_param.clone().ok_or_else(|| {
        Error::config("Data needs data_param { source, batch_size, backend: LMDB or LEVELDB }")
    })?;
    if d.source().is_empty() {
        return Err(Error::config(
            "data_param.source (the LevelDB or LMDB directory) is not set",
        ));
    }
    let want = Backend::from(d.backend());
    let source = std::path::Path::new(d.source());
    if let Some(have) = Backend::detect(source).filter(|&h| h != want) {
        let (want, have) = (want.caffe_name(), have.caffe_name());
        return Err(Error::config(format!(
            "data_param.source `{}` is an {have} data set but data_param.backend is {want}{}: \
             set `backend: {have}`",
            d.source(),
            if p.data_param.as_ref().is_some_and(|d| d.backend.is_none()) {
                " (Caffe's default when backend is not given)"
            } else {
                ""
            }
        )));
    }
    let t = merged_transform(p, d.scale, d.mean_file.as_ref(), d.crop_size, d.mirror);
    let tf = Transformer::new(&t, p.phase())?;
    let color = if tf.force_color || d.force_encoded_color() {
        Some(true)
    } else if tf.force_gray {
        Some(false)
    } else {
        None
    };
    let decode = Decode {
        color,
        resize: None,
    };
    let ds = want.open(source, decode)?;
    let cfg = LoaderConfig {
        batch_size: d.batch_size() as usize,
        shuffle: false,
        rand_skip: d.rand_skip() as usize,
        prefetch: d.prefetch() as usize,
    };
    Ok(Box::new(LoaderLayer::new(
        "Data",
        Loader::new(ds, tf, cfg)?,
    )))
}

#[cfg(test)]
mod tests {
    use crate::data::image_list::Decode;
    use crate::data::leveldb::LevelDbWriter;
    use crate::data::lmdb::{sample_to_datum, LmdbWriter};
    use crate::data::{idx::IdxDataset, Dataset};
    use crate::testing::{err_text, layer_param_from_yaml, Harness};

    const IMAGES: &str = "../shared/data/mnist/t10k-first1000-images-idx3-ubyte";
    const LABELS: &str = "../shared/data/mnist/t10k-first1000-labels-idx1-ubyte";

    #[test]
    fn reads_raw_digits_back_with_same_pixels_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mnist_lmdb");
        let ds = IdxDataset::open(IMAGES, Some(std::path::Path::new(LABELS))).unwrap();
        let mut w = LmdbWriter::create(&db).unwrap();
        for i in 0..20 {
            w.put(
                format!("{i:08}").as_bytes(),
                &sample_to_datum(&ds.get(i).unwrap()),
            )
            .unwrap();
        }
        w.finish().unwrap();
        let y = format!(
            "type: Data\ntop: [data, label]\ndata_param: {{ source: '{}', batch_size: 8, \
             backend: LMDB }}",
            db.display()
        );
        let mut h = Harness::new(&y, vec![]).unwrap();
        for b in 0..3 {
            h.forward().unwrap();
            assert_eq!(h.top[0].shape, vec![8, 1, 28, 28]);
            for k in 0..8 {
                let i = (b * 8 + k) % 20;
                let s = ds.get(i).unwrap();
                assert_eq!(&h.top[0].data[k * 784..(k + 1) * 784], &s.data[..]);
                assert_eq!(h.top[1].data[k], s.label as f32);
            }
        }
    }

    #[test]
    fn encoded_records_with_legacy_transform_fields() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("enc");
        let img = crate::data::image_list::read_image(
            "../shared/data/images/chelsea.png",
            Decode {
                color: Some(true),
                resize: Some((40, 50)),
            },
        )
        .unwrap();
        let mut w = LmdbWriter::create(&db).unwrap();
        let d = crate::proto::Datum {
            data: Some(crate::data::image_list::encode_image(&img, "png").unwrap()),
            encoded: Some(true),
            label: Some(5),
            ..Default::default()
        };
        w.put(b"00000000_chelsea.png", &d).unwrap();
        w.finish().unwrap();
        let y = format!(
            "type: Data\ntop: [data, label]\nphase: TEST\ndata_param: {{ source: '{}', batch_size: 2, \
             backend: LMDB, crop_size: 30, scale: 0.5 }}\ntransform_param: {{ force_gray: true }}",
            db.display()
        );
        let mut h = Harness::new(&y, vec![]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 1, 30, 30]);
        assert_eq!(h.top[1].data, vec![5.0, 5.0]);
        assert!(h.top[0].data.iter().all(|&v| (0.0..=127.5).contains(&v)));
    }

    #[test]
    fn leveldb_is_the_default_backend_and_gives_the_same_batches() {
        let dir = tempfile::tempdir().unwrap();
        let ds = IdxDataset::open(IMAGES, Some(std::path::Path::new(LABELS))).unwrap();
        let lv = dir.path().join("mnist_leveldb");
        let lm = dir.path().join("mnist_lmdb");
        let mut w = LevelDbWriter::create(&lv).unwrap();
        let mut m = LmdbWriter::create(&lm).unwrap();
        for i in 0..20 {
            let d = sample_to_datum(&ds.get(i).unwrap());
            w.put(format!("{i:08}").as_bytes(), &d).unwrap();
            m.put(format!("{i:08}").as_bytes(), &d).unwrap();
        }
        w.finish().unwrap();
        m.finish().unwrap();
        let layer = |src: &std::path::Path, backend: &str| {
            format!(
                "type: Data\ntop: [data, label]\ndata_param: {{ source: '{}', batch_size: 8{backend} }}",
                src.display()
            )
        };
        let mut a = Harness::new(&layer(&lv, ""), vec![]).unwrap();
        let mut b = Harness::new(&layer(&lv, ", backend: LEVELDB"), vec![]).unwrap();
        let mut c = Harness::new(&layer(&lm, ", backend: LMDB"), vec![]).unwrap();
        for batch in 0..3 {
            a.forward().unwrap();
            b.forward().unwrap();
            c.forward().unwrap();
            for k in 0..8 {
                let s = ds.get((batch * 8 + k) % 20).unwrap();
                assert_eq!(&a.top[0].data[k * 784..(k + 1) * 784], &s.data[..]);
                assert_eq!(a.top[1].data[k], s.label as f32);
            }
            for h in [&b, &c] {
                assert_eq!(h.top[0].data, a.top[0].data);
                assert_eq!(h.top[1].data, a.top[1].data);
            }
        }

        // The wrong backend for a directory names it and the right one.
        let p = layer_param_from_yaml(&layer(&lm, "")).unwrap();
        let e = err_text(crate::layers::create(&p));
        assert!(
            e.contains("mnist_lmdb")
                && e.contains("set `backend: LMDB`")
                && e.contains("Caffe's default"),
            "{e}"
        );
        let p = layer_param_from_yaml(&layer(&lv, ", backend: LMDB")).unwrap();
        let e = err_text(crate::layers::create(&p));
        assert!(
            e.contains("mnist_leveldb") && e.contains("set `backend: LEVELDB`"),
            "{e}"
        );
    }

    #[test]
    fn missing_sources_are_clear() {
        for y in [
            "type: Data\ntop: [data, label]\ndata_param: { source: /nonexistent/lmdb, batch_size: 2, backend: LMDB }",
            "type: Data\ntop: [data, label]\ndata_param: { source: /nonexistent/leveldb, batch_size: 2 }",
        ] {
            let p = layer_param_from_yaml(y).unwrap();
            assert!(err_text(crate::layers::create(&p)).contains("/nonexistent/"));
        }
        let p =
            layer_param_from_yaml("type: Data\ntop: [data, label]\ndata_param: { batch_size: 2 }")
                .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("source"));
    }
}
