//! `Threshold`: `y = 1` if `x > threshold`, else 0. Its derivative is zero wherever it exists,
//! so backward adds nothing (Caffe has no backward for it). Not in place: leaving the diff alone
//! in place would pass `dy` through as if it were `dx`.

use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Threshold` layer.
pub struct Threshold {
    threshold: f32,
}

/// Creates a `Threshold` from `threshold_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let threshold = p
        .threshold_param
        .as_ref()
        .map(|t| t.threshold())
        .unwrap_or(0.0);
    Ok(Box::new(Threshold { threshold }))
}

impl Layer for Threshold {
    fn type_name(&self) -> &'static str {
        "Threshold"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((self.threshold, 0.011))
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let t = self.threshold;
        Inplace::map(bottom, top, |x| if x > t { 1.0 } else { 0.0 });
        Ok(())
    }
    fn backward(
        &mut self,
        _: &[&Blob],
        _: &[bool],
        _: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        // The gradient is zero almost everywhere: adding it changes nothing.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn threshold_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Threshold\nthreshold_param: { threshold: 0.5 }");
        let y = run_forward(&mut *l, &[(&[4], &[0.5, 0.6, -1.0, 2.0])]);
        assert_eq!(y[0].data, vec![0.0, 1.0, 0.0, 1.0]);
        check_layer_from(
            "type: Threshold\nthreshold_param: { threshold: 0.3 }",
            &[&[2, 3, 4]],
        );
    }
}
