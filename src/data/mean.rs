//! Mean images as Caffe `.binaryproto` files (a `BlobProto`, legacy `1 x C x H x W` dimensions as
//! `compute_image_mean` writes them, or a `shape`), and computing one over a data set.

use super::{shape_text, Dataset};
use crate::blob::shape_str;
use crate::caffe::{read_blob_proto, write_blob_proto};
use crate::{Blob, Error, Result};
use std::path::Path;

/// A `C x H x W` mean image.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanImage {
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// CHW values.
    pub data: Vec<f32>,
}

/// Reads a mean `.binaryproto` through the one stored-blob reader. The blob must be one
/// non-empty image (`1 x C x H x W` or `C x H x W`).
pub fn read_mean(path: impl AsRef<Path>) -> Result<MeanImage> {
    let path = path.as_ref();
    mean_from_blob(read_blob_proto(path)?, &path.display().to_string())
}

/// A stored blob as a mean image: one non-empty `1 x C x H x W` or `C x H x W` image; `path`
/// names the source in errors.
pub fn mean_from_blob(b: Blob, path: &str) -> Result<MeanImage> {
    let shape = match b.shape.as_slice() {
        [1, c, h, w] | [c, h, w] => [*c, *h, *w],
        s => {
            return Err(Error::format(
                path,
                format!(
                    "a mean file holds one image (1 x C x H x W or C x H x W), this blob is {}",
                    shape_str(s)
                ),
            ))
        }
    };
    if shape.contains(&0) {
        return Err(Error::format(
            path,
            format!("the mean image {} is empty", shape_text(shape)),
        ));
    }
    Ok(MeanImage {
        shape,
        data: b.data,
    })
}

/// Writes a mean image as Caffe does (legacy `num=1, channels, height, width`, float data).
pub fn write_mean(path: impl AsRef<Path>, mean: &MeanImage) -> Result<()> {
    let b = Blob::from_data(
        &[1, mean.shape[0], mean.shape[1], mean.shape[2]],
        mean.data.clone(),
    )?;
    write_blob_proto(path, &b)
}

/// The per-pixel mean of every record (Caffe's `compute_image_mean`). All records must have the
/// first one's shape. `progress` is called with the number of records done.
pub fn compute_mean(ds: &dyn Dataset, mut progress: impl FnMut(usize)) -> Result<MeanImage> {
    if ds.is_empty() {
        return Err(Error::Invalid(format!("{}: no records", ds.describe())));
    }
    let first = ds.get(0)?;
    let shape = first.shape();
    let mut sum = vec![0f64; first.data.len()];
    for i in 0..ds.len() {
        let s = if i == 0 { first.clone() } else { ds.get(i)? };
        if s.shape() != shape {
            return Err(Error::Invalid(format!(
                "{}: record {i} is {}, the first record is {}; every record needs one size for \
                 a mean image (resize them when converting)",
                ds.describe(),
                shape_text(s.shape()),
                shape_text(shape)
            )));
        }
        for (a, &v) in sum.iter_mut().zip(&s.data) {
            *a += v as f64;
        }
        progress(i + 1);
    }
    let n = ds.len() as f64;
    Ok(MeanImage {
        shape,
        data: sum.into_iter().map(|v| (v / n) as f32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::BlobProto;
    use crate::testing::err_text;
    use prost::Message;

    pub const CIFAR_MEAN: &str = "../shared/data/caffe/cifar10_quick_v1/mean.binaryproto";

    #[test]
    fn reads_caffe_cifar_mean_and_roundtrips() {
        assert!(Path::new(CIFAR_MEAN).exists(), "{CIFAR_MEAN} is missing");
        let m = read_mean(CIFAR_MEAN).unwrap();
        assert_eq!(m.shape, [3, 32, 32]);
        let avg = m.data.iter().sum::<f32>() / m.data.len() as f32;
        assert!(avg > 90.0 && avg < 150.0, "CIFAR mean pixel {avg}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.binaryproto");
        write_mean(&p, &m).unwrap();
        assert_eq!(read_mean(&p).unwrap(), m);
    }

    #[test]
    fn rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.binaryproto");
        std::fs::write(&p, b"\xff\xff\xff\xff garbage").unwrap();
        let e = err_text(read_mean(&p));
        assert!(
            e.contains("bad.binaryproto") && e.contains("BlobProto"),
            "{e}"
        );
        let b = BlobProto {
            num: Some(2),
            channels: Some(1),
            height: Some(1),
            width: Some(1),
            data: vec![1.0, 2.0],
            ..Default::default()
        };
        std::fs::write(&p, b.encode_to_vec()).unwrap();
        assert!(err_text(read_mean(&p)).contains("one image"));
        // Legacy `num: -1` once panicked ("capacity overflow") in the reader.
        let neg = BlobProto { num: Some(-1), ..b };
        std::fs::write(&p, neg.encode_to_vec()).unwrap();
        let e = err_text(read_mean(&p));
        assert!(
            e.contains("bad.binaryproto") && e.contains("negative"),
            "{e}"
        );
    }

    #[test]
    fn mean_of_idx_digits() {
        let ds = crate::data::idx::IdxDataset::open(
            "../shared/data/mnist/t10k-first1000-images-idx3-ubyte",
            None,
        )
        .unwrap();
        let mut last = 0;
        let m = compute_mean(&ds, |n| last = n).unwrap();
        assert_eq!(last, 1000);
        assert_eq!(m.shape, [1, 28, 28]);
        let naive: f64 = (0..1000)
            .map(|i| ds.get(i).unwrap().data[14 * 28 + 14] as f64)
            .sum::<f64>()
            / 1000.0;
        assert!((m.data[14 * 28 + 14] as f64 - naive).abs() < 1e-3);
    }
}
