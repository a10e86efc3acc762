//! `IdxData` (crema extension): MNIST-format IDX files read directly, gzipped or not
//! (`idx_data_param`: `source` images, `label_source` labels, `batch_size`, `shuffle` each epoch,
//! `rand_skip`, `prefetch`), with `transform_param`. Tops: `data` `[N, C, H, W]` from the IDX
//! dimensions (`[N, 1, 28, 28]` for MNIST) and `label` `[N]`.

use super::loader::LoaderLayer;
use super::Layer;
use crate::data::idx::IdxDataset;
use crate::data::prefetch::{Loader, LoaderConfig};
use crate::data::transform::Transformer;
use crate::proto::LayerParameter;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

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
    let ds = IdxDataset::open(d.source(), labels.map(Path::new))?;
    let tf = Transformer::new(&p.transform_param.clone().unwrap_or_default(), p.phase())?;
    let cfg = LoaderConfig {
        batch_size: d.batch_size() as usize,
        shuffle: d.shuffle(),
        rand_skip: d.rand_skip() as usize,
        prefetch: d.prefetch() as usize,
    };
    Ok(Box::new(LoaderLayer::new(
        "IdxData",
        Loader::new(Arc::new(ds), tf, cfg)?,
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
