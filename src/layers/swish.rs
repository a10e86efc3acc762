//! `Swish`: `y = x sigmoid(beta x)`. Not in place: the derivative needs `x`.

use super::sigmoid::sigmoid;
use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Swish` layer.
pub struct Swish {
    beta: f32,
}

/// Creates a `Swish` from `swish_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let beta = p.swish_param.as_ref().map(|s| s.beta()).unwrap_or(1.0);
    Ok(Box::new(Swish { beta }))
}

impl Layer for Swish {
    fn type_name(&self) -> &'static str {
        "Swish"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
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
        let b = self.beta;
        Inplace::map(bottom, top, |x| x * sigmoid(b * x));
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
            let b = self.beta;
            Inplace::backward(top, bottom, |x, _, dy| {
                let s = sigmoid(b * x);
                dy * (s + b * x * s * (1.0 - s))
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn swish_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Swish\nswish_param: { beta: 2 }");
        let y = run_forward(&mut *l, &[(&[3], &[0.0, 1.0, -1.0])]);
        assert_close(&y[0].data, &[0.0, 0.880_797, -0.119_203], 1e-6);
        check_layer_from("type: Swish", &[&[2, 3, 4]]);
        check_layer_from("type: Swish\nswish_param: { beta: 1.5 }", &[&[2, 3, 4]]);
    }
}
