//! `IdxData` (crema extension): MNIST-format IDX files read directly, gzipped or not
//! (`idx_data_param`: `source` images, `label_source` labels, `batch_size`, `shuffle` each epoch,
//! `rand_skip`, `prefetch`, `tuples`), with `transform_param`. Tops: `data` `[N, C, H, W]` from
//! the IDX dimensions (`[N, 1, 28, 28]` for MNIST) and `label` `[N]`. With `tuples: PAIRS` or
//! `TRIPLETS` each item stacks 2 or 3 images along the channels (see `data::tuples`).

use super::loader::LoaderLayer;
use super::Layer;
use crate::data::idx::IdxDataset;
use crate::data::prefetch::{Loader, LoaderConfig};
use crate::data::transform::Transformer;
use crate::data::tuples::{TupleDataset, Tuples};
use crate::proto::idx_data_parameter::Tuples as IdxTuples;
use crate::proto::LayerParameter;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// The seed of the partners of `tuples` (fixed: the pairs are part of the data set, as in
/// Caffe's converted pair databases).
const TUPLE_SEED: u64 = 0x0005_eed7_u64;

/// Creates `IdxData` from `idx_data_param` and `transform_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.idx_data_param.clone().ok_or_else(|| {
        Error::config("IdxData needs idx_data_param { source, label_source, batch_size }")
    })?;
    if d.source().is_empty() {
        return Err(Error::config(
            "idx_data_param.source (the IDX image file) is not set",
        ));
    }
    let labels = d.label_source.as_deref().filter(|s| !s.is_empty());
    if p.top.len() > 1 && labels.is_none() {
        return Err(Error::config(
            "IdxData has a label top but idx_data_param.label_source is not set",
        ));
    }
    let ds: Arc<dyn crate::data::Dataset> =
        Arc::new(IdxDataset::open(d.source(), labels.map(Path::new))?);
    let ds: Arc<dyn crate::data::Dataset> = match d.tuples() {
        IdxTuples::Single => ds,
        t => {
            crate::ensure!(
                labels.is_some(),
                "idx_data_param.tuples: {t:?} needs label_source (pairs and triplets are made                  from the classes)"
            );
            let kind = if t == IdxTuples::Pairs {
                Tuples::Pairs
            } else {
                Tuples::Triplets
            };
            Arc::new(TupleDataset::new(ds, kind, TUPLE_SEED)?)
        }
    };
    let tf = Transformer::new(&p.transform_param.clone().unwrap_or_default(), p.phase())?;
    let cfg = LoaderConfig {
        batch_size: d.batch_size() as usize,
        shuffle: d.shuffle(),
        rand_skip: d.rand_skip() as usize,
        prefetch: d.prefetch() as usize,
    };
    Ok(Box::new(LoaderLayer::new(
        "IdxData",
        Loader::new(ds, tf, cfg)?,
    )))
}

#[cfg(test)]
mod tests {
    use crate::testing::{err_text, layer_param_from_yaml, Harness};
    use std::io::Write;

    const IMAGES: &str = "../shared/data/mnist/t10k-first1000-images-idx3-ubyte";
    const LABELS: &str = "../shared/data/mnist/t10k-first1000-labels-idx1-ubyte";

    fn yaml(images: &str, labels: &str, extra: &str) -> String {
        format!(
            "type: IdxData\ntop: [data, label]\nidx_data_param: {{ source: '{images}', \
             label_source: '{labels}', batch_size: 4 {extra} }}\n\
             transform_param: {{ scale: 0.00390625 }}"
        )
    }

    #[test]
    fn real_mnist_batches_in_order() {
        let mut h = Harness::new(&yaml(IMAGES, LABELS, ""), vec![]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![4, 1, 28, 28]);
        assert_eq!(h.top[1].shape, vec![4]);
        assert_eq!(h.top[1].data, vec![7.0, 2.0, 1.0, 0.0]);
        let max = h.top[0].data.iter().cloned().fold(0.0, f32::max);
        assert_eq!(max, 255.0 / 256.0, "scaled by 1/256");
        // Pixels match the file (header 16 bytes).
        let raw = std::fs::read(IMAGES).unwrap();
        let want: Vec<f32> = raw[16 + 784..16 + 2 * 784]
            .iter()
            .map(|&b| b as f32 * 0.00390625)
            .collect();
        assert_eq!(&h.top[0].data[784..2 * 784], &want[..]);
        h.forward().unwrap();
        assert_eq!(h.top[1].data, vec![4.0, 1.0, 4.0, 9.0]);
    }

    #[test]
    fn gzipped_copies_and_shuffle_reseed() {
        let dir = tempfile::tempdir().unwrap();
        let gz = |src: &str, name: &str| {
            let p = dir.path().join(name);
            let mut e = flate2::write::GzEncoder::new(
                std::fs::File::create(&p).unwrap(),
                flate2::Compression::fast(),
            );
            e.write_all(&std::fs::read(src).unwrap()).unwrap();
            e.finish().unwrap();
            p.display().to_string()
        };
        let (gi, gl) = (gz(IMAGES, "images.gz"), gz(LABELS, "labels.gz"));
        let mut plain = Harness::new(&yaml(IMAGES, LABELS, ""), vec![]).unwrap();
        let mut zipped = Harness::new(&yaml(&gi, &gl, ""), vec![]).unwrap();
        plain.forward().unwrap();
        zipped.forward().unwrap();
        assert_eq!(plain.top, zipped.top);

        let mut s = Harness::new(&yaml(&gi, &gl, ", shuffle: true"), vec![]).unwrap();
        s.layer.reseed(9);
        s.forward().unwrap();
        let first = s.top.clone();
        assert_ne!(first[1].data, vec![7.0, 2.0, 1.0, 0.0]);
        s.forward().unwrap();
        s.layer.reseed(9);
        s.forward().unwrap();
        assert_eq!(s.top, first, "reseed repeats the batches");
    }

    #[test]
    fn pairs_and_triplets_stack_images_along_channels() {
        let mut h = Harness::new(&yaml(IMAGES, LABELS, ", tuples: PAIRS"), vec![]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![4, 2, 28, 28]);
        assert!(h.top[1].data.iter().all(|&v| v == 0.0 || v == 1.0));
        // The first image of each pair is the plain record.
        let mut plain = Harness::new(&yaml(IMAGES, LABELS, ""), vec![]).unwrap();
        plain.forward().unwrap();
        assert_eq!(&h.top[0].data[..784], &plain.top[0].data[..784]);
        let mut t = Harness::new(&yaml(IMAGES, LABELS, ", tuples: TRIPLETS"), vec![]).unwrap();
        t.forward().unwrap();
        assert_eq!(t.top[0].shape, vec![4, 3, 28, 28]);
        assert_eq!(
            t.top[1].data,
            vec![7.0, 2.0, 1.0, 0.0],
            "the anchors' classes"
        );
        let p = layer_param_from_yaml(&format!(
            "type: IdxData\ntop: data\nidx_data_param: {{ source: '{IMAGES}', batch_size: 2, \
             tuples: PAIRS }}"
        ))
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("label_source"));
    }

    #[test]
    fn config_and_file_errors() {
        let e = err_text(crate::layers::create(
            &layer_param_from_yaml(&yaml("/nonexistent/images", LABELS, "")).unwrap(),
        ));
        assert!(e.contains("/nonexistent/images"), "{e}");
        let p = layer_param_from_yaml(
            "type: IdxData\ntop: [data, label]\nidx_data_param: { source: x, batch_size: 2 }",
        )
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("label_source"));
        let p = layer_param_from_yaml(
            &yaml(IMAGES, LABELS, "").replace("batch_size: 4", "batch_size: 0"),
        )
        .unwrap();
        assert!(crate::layers::create(&p).is_err());
        let p = layer_param_from_yaml(
            &yaml(IMAGES, LABELS, "").replace("scale: 0.00390625", "crop_size: 30"),
        )
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("crop_size 30"));
    }
}
