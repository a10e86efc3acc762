//! Layers whose top holds the bottom's values unchanged under another shape (`Flatten`,
//! `Reshape`): the [`NewShape`] trait gives the top's shape, one generic [`SameData`] layer
//! copies the values forward and adds the diff back.

use super::{BlobCounts, Layer};
use crate::{Blob, Result};

/// The top's shape for a bottom's shape (the same count).
pub trait NewShape: Send + 'static {
    /// The Caffe type string (`"Flatten"`).
    const TYPE: &'static str;
    /// The top's shape, or an error naming the parameter that does not fit `shape`.
    fn top_shape(&self, shape: &[usize]) -> Result<Vec<usize>>;
}

/// The layer of a [`NewShape`]: one bottom, one top, the same values (copied: Caffe shares the
/// bottom's memory, crema's net lends each blob separately).
pub struct SameData<S>(pub S);

/// Boxes a [`NewShape`] as a layer (for the `create` functions).
pub fn boxed<S: NewShape>(s: S) -> Result<Box<dyn Layer>> {
    Ok(Box::new(SameData(s)))
}

impl<S: NewShape> Layer for SameData<S> {
    fn type_name(&self) -> &'static str {
        S::TYPE
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let s = self.0.top_shape(&bottom[0].shape)?;
        top[0].reshape(&s);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        top[0].data.copy_from_slice(&bottom[0].data);
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
            crate::math::axpy(1.0, &top[0].diff, &mut bottom[0].diff);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{NewShape, SameData};
    use crate::testing::Harness;
    use crate::Blob;

    /// Reverses the axes' order (the values stay in memory order).
    struct Reversed;

    impl NewShape for Reversed {
        const TYPE: &'static str = "Reversed";
        fn top_shape(&self, shape: &[usize]) -> crate::Result<Vec<usize>> {
            Ok(shape.iter().rev().copied().collect())
        }
    }

    #[test]
    fn same_data_copies_forward_and_adds_the_diff_back() {
        let x = Blob::from_data(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let mut h = Harness::with_layer(Box::new(SameData(Reversed)), vec![x], 1).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![3, 2]);
        assert_eq!(h.top[0].data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        h.top[0].diff = vec![0.5, -1.0, 2.0, 0.0, 1.0, 3.0];
        h.bottom[0].diff = vec![1.0; 6];
        h.backward(&[true]).unwrap();
        assert_eq!(h.bottom[0].diff, vec![1.5, 0.0, 3.0, 1.0, 2.0, 4.0]);
        h.backward(&[false]).unwrap();
        assert_eq!(h.bottom[0].diff, vec![1.5, 0.0, 3.0, 1.0, 2.0, 4.0]);
    }
}
