//! `BlobProto` <-> [`Blob`]: the one reader of Caffe's stored blobs (caffemodel weights, mean
//! files, solver-state history, blobs embedded in a model file). Every size a file declares is
//! checked before anything is sized by it: no negative dimension, a product that fits, and as
//! many values as the shape needs.

use super::Blob;
use crate::proto::{BlobProto, BlobShape};
use crate::{Error, Result};
use std::borrow::Cow;

/// True when the proto carries Caffe's legacy `num/channels/height/width` dimensions, which
/// then win over `shape` (Caffe's `Blob::FromProto`).
fn is_legacy(p: &BlobProto) -> bool {
    p.num.is_some() || p.channels.is_some() || p.height.is_some() || p.width.is_some()
}

/// The shape a `BlobProto` declares (legacy 4-D dimensions when any is set, else `shape.dim`),
/// checked: every dimension non-negative and their product within `usize`. `file` names the
/// source in errors.
pub fn proto_shape(p: &BlobProto, file: &str) -> Result<Vec<usize>> {
    let dims: Vec<i64> = if is_legacy(p) {
        [p.num(), p.channels(), p.height(), p.width()]
            .iter()
            .map(|&d| i64::from(d))
            .collect()
    } else {
        p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default()
    };
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            Error::format(
                file,
                format!("stored blob has a negative dimension in {dims:?}"),
            )
        })?;
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::format(file, format!("stored blob dimensions {dims:?} overflow")))?;
    Ok(shape)
}

/// The proto's values (`double_data` narrowed when present, as Caffe prefers it), checked to be
/// exactly `count`.
fn proto_values<'a>(p: &'a BlobProto, count: usize, file: &str) -> Result<Cow<'a, [f32]>> {
    let held = if p.double_data.is_empty() {
        p.data.len()
    } else {
        p.double_data.len()
    };
    if held != count {
        return Err(Error::format(
            file,
            format!("stored blob holds {held} values, its shape needs {count}"),
        ));
    }
    Ok(if p.double_data.is_empty() {
        Cow::Borrowed(&p.data)
    } else {
        Cow::Owned(p.double_data.iter().map(|&v| v as f32).collect())
    })
}

/// A blob of the shape the proto declares, holding its values (diff zeroed).
pub fn blob_from_proto(p: &BlobProto, file: &str) -> Result<Blob> {
    let shape = proto_shape(p, file)?;
    let count = shape.iter().product();
    let data = proto_values(p, count, file)?.into_owned();
    Blob::from_data(&shape, data)
}

fn strip_leading_ones(s: &[usize]) -> &[usize] {
    let k = s.iter().take_while(|&&d| d == 1).count();
    &s[k.min(s.len().saturating_sub(1))..]
}

/// Copies the values of blob `index` of `layer` stored in `file` into `dst`, whose shape must
/// match: [`Error::WeightShape`] otherwise. Legacy 4-D shapes match when they agree after
/// dropping leading 1s, as Caffe's legacy comparison allows.
pub fn copy_blob_proto(
    src: &BlobProto,
    dst: &mut Blob,
    file: &str,
    layer: &str,
    index: usize,
) -> Result<()> {
    let shape = proto_shape(src, file)?;
    let same = shape == dst.shape
        || (is_legacy(src) && strip_leading_ones(&shape) == strip_leading_ones(&dst.shape));
    if !same {
        return Err(Error::WeightShape {
            file: file.to_string(),
            layer: layer.to_string(),
            index,
            expected: dst.shape.clone(),
            found: shape,
        });
    }
    let values = proto_values(src, dst.count(), file).map_err(|e| match e {
        Error::Format { path, message } => Error::Format {
            path,
            message: format!("layer `{layer}` blob {index}: {message}"),
        },
        e => e,
    })?;
    dst.data.copy_from_slice(&values);
    Ok(())
}

/// A `BlobProto` with N-D `shape` and float data (and diff when asked).
pub fn blob_to_proto(b: &Blob, with_diff: bool) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape {
            dim: b.shape.iter().map(|&d| d as i64).collect(),
        }),
        data: b.data.clone(),
        diff: if with_diff {
            b.diff.clone()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// A `BlobProto` the way Caffe's `compute_image_mean` writes one: legacy
/// `num/channels/height/width` for blobs of up to four axes (leading 1s added) whose dimensions
/// fit an `int32`, else N-D `shape`; float data.
pub fn blob_to_legacy_proto(b: &Blob) -> BlobProto {
    let small = b.shape.iter().all(|&d| i32::try_from(d).is_ok());
    if b.shape.len() > 4 || !small {
        return blob_to_proto(b, false);
    }
    let mut d = vec![1i32; 4 - b.shape.len()];
    d.extend(b.shape.iter().map(|&x| x as i32));
    BlobProto {
        num: Some(d[0]),
        channels: Some(d[1]),
        height: Some(d[2]),
        width: Some(d[3]),
        data: b.data.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(n: i32, c: i32, h: i32, w: i32, data: Vec<f32>) -> BlobProto {
        BlobProto {
            num: Some(n),
            channels: Some(c),
            height: Some(h),
            width: Some(w),
            data,
            ..Default::default()
        }
    }

    #[test]
    fn legacy_and_nd_shapes_round_trip() {
        let p = legacy(1, 2, 1, 3, (0..6).map(|i| i as f32).collect());
        let b = blob_from_proto(&p, "m").unwrap();
        assert_eq!(b.shape, [1, 2, 1, 3]);
        assert_eq!(b.data, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let back = blob_from_proto(&blob_to_proto(&b, false), "m").unwrap();
        assert_eq!(back, b);
        assert_eq!(blob_to_legacy_proto(&Blob::new(&[3, 2])).num, Some(1));
        let d = BlobProto {
            shape: Some(BlobShape { dim: vec![2] }),
            double_data: vec![0.5, -1.25],
            ..Default::default()
        };
        assert_eq!(blob_from_proto(&d, "d").unwrap().data, [0.5, -1.25]);
    }

    #[test]
    fn negative_overflowing_and_short_blobs_are_errors_naming_the_file() {
        // Caffe's legacy `num: -1` used to be cast to a huge size and allocated.
        let e = blob_from_proto(&legacy(-1, 3, 32, 32, vec![0.0; 3072]), "bad.binaryproto")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.binaryproto") && e.contains("negative"),
            "{e}"
        );
        let huge = BlobProto {
            shape: Some(BlobShape {
                dim: vec![1 << 40, 1 << 40],
            }),
            ..Default::default()
        };
        let e = blob_from_proto(&huge, "h").unwrap_err().to_string();
        assert!(e.contains("overflow"), "{e}");
        let wide = BlobProto {
            shape: Some(BlobShape { dim: vec![1 << 40] }),
            data: vec![1.0; 4],
            ..Default::default()
        };
        let e = blob_from_proto(&wide, "w").unwrap_err().to_string();
        assert!(
            e.contains("holds 4 values") && e.contains("1099511627776"),
            "{e}"
        );
        assert!(blob_from_proto(&BlobProto::default(), "e").is_err());
    }

    #[test]
    fn copy_checks_shape_then_count() {
        let mut dst = Blob::new(&[2, 3]);
        let p = legacy(1, 1, 2, 3, vec![1.0; 6]);
        copy_blob_proto(&p, &mut dst, "w", "ip", 0).unwrap();
        assert_eq!(dst.data, [1.0; 6]);
        let e =
            copy_blob_proto(&legacy(1, 1, 3, 2, vec![1.0; 6]), &mut dst, "w", "ip", 1).unwrap_err();
        assert!(
            matches!(&e, Error::WeightShape { layer, index: 1, found, .. }
                if layer == "ip" && found == &[1, 1, 3, 2]),
            "{e}"
        );
        let e = copy_blob_proto(&legacy(1, 1, 2, 3, vec![1.0; 5]), &mut dst, "w", "ip", 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("layer `ip` blob 0") && e.contains("holds 5"),
            "{e}"
        );
    }
}
