//! `Silence`: consumes its bottoms so they are not net outputs; no tops, so no gradient flows
//! (backward adds nothing).

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Silence` layer.
pub struct Silence;

/// Creates a `Silence` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Silence))
}

impl Layer for Silence {
    fn type_name(&self) -> &'static str {
        "Silence"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            min_bottom: Some(1),
            exact_top: Some(0),
            ..Default::default()
        }
    }
    fn reshape(&mut self, _: &[&Blob], _: &mut [&mut Blob]) -> Result<()> {
        Ok(())
    }
    fn forward(&mut self, _: &[&Blob], _: &mut [&mut Blob], _: &mut [&mut Blob]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, Harness};
    use crate::Blob;

    #[test]
    fn silence_has_no_tops_and_leaves_diffs() {
        let mut h =
            Harness::new("type: Silence", vec![Blob::new(&[2, 2]), Blob::new(&[3])]).unwrap();
        assert!(h.top.is_empty());
        h.forward().unwrap();
        h.bottom[0].diff = vec![1.0; 4];
        h.backward(&[true, true]).unwrap();
        assert_eq!(h.bottom[0].diff, vec![1.0; 4]);
        assert!(Harness::new("type: Silence", vec![]).is_err());
        // The objective has no tops, so every gradient is zero and must stay zero.
        check_layer_from("type: Silence", &[&[2, 3], &[4]]);
    }
}
