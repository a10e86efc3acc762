//! `Clip`: `y = min(max(x, min), max)`; gradient passes where `min <= x <= max` (Caffe's rule)
//! and is 0 outside. Not in place: a clipped `y` cannot tell whether `x` was outside.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::{Error, Result};

/// `Clip` layer.
pub struct Clip {
    min: f32,
    max: f32,
}

/// Creates a `Clip` from `clip_param` (both `min` and `max` are required).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let cp = p
        .clip_param
        .as_ref()
        .ok_or_else(|| Error::config("Clip needs `clip_param: { min: .., max: .. }`"))?;
    let (min, max) = (cp.min, cp.max);
    if min > max || min.is_nan() || max.is_nan() {
        crate::bail!("clip_param.min ({min}) must not exceed max ({max})");
    }
    boxed(Clip { min, max })
}

impl Elementwise for Clip {
    const TYPE: &'static str = "Clip";
    fn f(&self, x: f32) -> f32 {
        x.max(self.min).min(self.max)
    }
    fn df(&self, x: f32, _: f32, dy: f32) -> f32 {
        if x >= self.min && x <= self.max {
            dy
        } else {
            0.0
        }
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromInput
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_from_yaml, layer_param_from_yaml};
    use crate::testing::{run_forward, Harness};
    use crate::Blob;

    #[test]
    fn clip_forward_hand_values_gradient_and_errors() {
        let yaml = "type: Clip\nclip_param: { min: -0.5, max: 0.8 }";
        let mut l = layer_from_yaml(yaml);
        let y = run_forward(&mut *l, &[(&[4], &[-2.0, 0.3, 0.8, 5.0])]);
        assert_eq!(y[0].data, vec![-0.5, 0.3, 0.8, 0.8]);
        // Gradient is zero outside.
        let x = Blob::from_data(&[4], vec![-2.0, 0.3, 0.7, 5.0]).unwrap();
        let mut h = Harness::new(yaml, vec![x]).unwrap();
        h.forward().unwrap();
        h.top[0].diff = vec![1.0; 4];
        h.backward(&[true]).unwrap();
        assert_eq!(h.bottom[0].diff, vec![0.0, 1.0, 1.0, 0.0]);
        // The random inputs of this check keep clear of the two corners.
        check_layer_from(yaml, &[&[2, 3, 4]]);
        let p = layer_param_from_yaml("type: Clip\nclip_param: { min: 1 }").unwrap();
        assert!(err_text(super::create(&p)).contains("max"));
        let p = layer_param_from_yaml("type: Clip").unwrap();
        assert!(err_text(super::create(&p)).contains("clip_param"));
    }

    #[test]
    fn clip_does_not_run_in_place() {
        // A clipped `y` hides `x`.
        assert!(
            !crate::testing::layer_from_yaml("type: Clip\nclip_param: { min: -1, max: 1 }")
                .allows_inplace()
        );
    }
}
