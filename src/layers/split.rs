//! `Split`: copies its one bottom into every top; backward sums the tops' diffs into the
//! bottom. The net needs no Split for fan-out (gradients accumulate), but models may name it.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Split` layer.
pub struct Split;

/// Creates a `Split` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Split))
}

impl Layer for Split {
    fn type_name(&self) -> &'static str {
        "Split"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(1),
            min_top: Some(1),
            ..Default::default()
        }
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        for t in top.iter_mut() {
            t.reshape(&bottom[0].shape);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        for t in top.iter_mut() {
            t.data.copy_from_slice(&bottom[0].data);
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if down[0] {
            for t in top {
                crate::math::axpy(1.0, &t.diff, &mut bottom[0].diff);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    #[test]
    fn split_copies_and_sums() {
        let x = Blob::from_data(&[3], vec![1.0, -2.0, 3.0]).unwrap();
        let mut h = Harness::new("type: Split\ntop: [a, b, c]", vec![x]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top.len(), 3);
        for t in &h.top {
            assert_eq!(t.data, vec![1.0, -2.0, 3.0]);
        }
        h.top[0].diff = vec![1.0, 2.0, 3.0];
        h.top[1].diff = vec![10.0, 20.0, 30.0];
        h.top[2].diff = vec![0.5, 0.5, 0.5];
        h.backward(&[true]).unwrap();
        assert_close(&h.bottom[0].diff, &[11.5, 22.5, 33.5], 1e-6);
        check_layer_from("type: Split\ntop: [a, b]", &[&[2, 3]]);
    }
}
