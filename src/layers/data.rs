//! `Data`: Caffe's LMDB data sets of `Datum` records (raw uint8, `float_data`, or encoded
//! JPEG/PNG), `data_param` (`source`, `batch_size`, `backend: LMDB`, `rand_skip`, `prefetch`,
//! `force_encoded_color`) and `transform_param`. LevelDB is not supported.

use super::loader::{merged_transform, LoaderLayer};
use super::Layer;
use crate::data::image_list::Decode;
use crate::data::lmdb::LmdbDataset;
use crate::data::prefetch::{Loader, LoaderConfig};
use crate::data::transform::Transformer;
use crate::proto::data_parameter::Db;
use crate::proto::LayerParameter;
use crate::{Error, Result};
use std::sync::Arc;

/// Creates `Data` from `data_param` and `transform_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.data_param.clone().ok_or_else(|| {
        Error::config("Data needs data_param { source, batch_size, backend: LMDB }")
    })?;
    if d.backend() != Db::Lmdb {
        return Err(Error::config(format!(
            "data_param.backend is LEVELDB (Caffe's default when backend is not given); crema \
             reads LMDB only: set `backend: LMDB` (and convert a LevelDB data set with Caffe's \
             tools or `crema convert`) for source `{}`",
            d.source()
        )));
    }
    if d.source().is_empty() {
        return Err(Error::config(
            "data_param.source (the LMDB directory) is not set",
        ));
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
    let ds = LmdbDataset::open(
        d.source(),
        Decode {
            color,
            resize: None,
        },
    )?;
    let cfg = LoaderConfig {
        batch_size: d.batch_size() as usize,
        shuffle: false,
        rand_skip: d.rand_skip() as usize,
        prefetch: d.prefetch() as usize,
    };
    Ok(Box::new(LoaderLayer::new(
        "Data",
        Loader::new(Arc::new(ds), tf, cfg)?,
    )))
}

#[cfg(test)]
mod tests {
    use crate::data::image_list::Decode;
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
    fn leveldb_and_missing_sources_are_clear() {
        let p = layer_param_from_yaml(
            "type: Data\ntop: [data, label]\ndata_param: { source: examples/mnist_train_leveldb, batch_size: 2 }",
        )
        .unwrap();
        let e = err_text(crate::layers::create(&p));
        assert!(e.contains("backend: LMDB") && e.contains("LEVELDB"), "{e}");
        let p = layer_param_from_yaml(
            "type: Data\ntop: [data, label]\ndata_param: { source: /nonexistent/lmdb, batch_size: 2, backend: LMDB }",
        )
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("/nonexistent/lmdb"));
    }
}
