//! `PReLU`: `y = max(0, x) + a_c min(0, x)` with a learned slope per channel (axis 1), or one
//! slope for all channels with `channel_shared`. Runs in place like Caffe: the layer then keeps
//! its own copy of the input for backward.

use super::{BlobCounts, Inplace, Layer, SetupCtx};
use crate::proto::LayerParameter;
use crate::{filler, Blob, Result};

/// `PReLU` layer; its one learnable blob holds the slopes (`[C]`, or `[1]` when shared).
pub struct PReLU {
    filler: crate::proto::FillerParameter,
    shared: bool,
    /// Copy of the input, kept only when running in place.
    x_copy: Vec<f32>,
}

/// Creates a `PReLU` from `prelu_param` (slopes default to the constant 0.25).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let pp = p.prelu_param.clone().unwrap_or_default();
    Ok(Box::new(PReLU {
        filler: pp.filler.clone().unwrap_or_else(|| filler::constant(0.25)),
        shared: pp.channel_shared(),
        x_copy: Vec::new(),
    }))
}

/// `(channels, inner)` of the input: axis 1 and everything after it.
fn dims(shape: &[usize]) -> (usize, usize) {
    let c = shape.get(1).copied().unwrap_or(1);
    let inner = shape.iter().skip(2).product();
    (c, inner)
}

impl Layer for PReLU {
    fn type_name(&self) -> &'static str {
        "PReLU"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.011))
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let shape = &bottom[0].shape;
        crate::ensure!(
            shape.len() >= 2,
            "PReLU needs an input with at least 2 axes (N x C x ...), got {}",
            bottom[0].shape_string()
        );
        let a = ctx.filled(&[if self.shared { 1 } else { shape[1] }], &self.filler)?;
        Ok(vec![a])
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let shape = match bottom.first() {
            Some(b) => &b.shape,
            None => &top[0].shape,
        };
        crate::ensure!(
            shape.len() >= 2,
            "PReLU needs an input with at least 2 axes (N x C x ...), got {}",
            crate::blob::shape_str(shape)
        );
        Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let slopes = &params[0].data;
        let (c, inner) = dims(&top[0].shape);
        crate::ensure!(
            self.shared || slopes.len() == c,
            "PReLU has {} slopes but the input has {c} channels",
            slopes.len()
        );
        if bottom.is_empty() {
            self.x_copy.clear();
            self.x_copy.extend_from_slice(&top[0].data);
        }
        let x: &[f32] = match bottom.first() {
            Some(b) => &b.data,
            None => &self.x_copy,
        };
        let y = &mut top[0].data;
        for (i, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            let a = if self.shared {
                slopes[0]
            } else {
                slopes[(i / inner.max(1)) % c]
            };
            *y = if x > 0.0 { x } else { a * x };
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let inplace = top.is_empty();
        let b = &mut *bottom[0];
        let (c, inner) = dims(&b.shape);
        let x: &[f32] = if inplace { &self.x_copy } else { &b.data };
        let dy: &[f32] = match top.first() {
            Some(t) => &t.diff,
            None => &b.diff,
        };
        let slope_of = |i: usize| {
            if self.shared {
                0
            } else {
                (i / inner.max(1)) % c
            }
        };
        // Slope gradient first (in place, dy is about to be overwritten).
        let pa = &mut *params[0];
        for i in 0..x.len() {
            if x[i] <= 0.0 {
                pa.diff[slope_of(i)] += dy[i] * x[i];
            }
        }
        if down[0] {
            let a = &pa.data;
            if inplace {
                for i in 0..x.len() {
                    if x[i] <= 0.0 {
                        b.diff[i] *= a[slope_of(i)];
                    }
                }
            } else {
                let dy = &top[0].diff;
                for i in 0..x.len() {
                    b.diff[i] += if x[i] > 0.0 {
                        dy[i]
                    } else {
                        a[slope_of(i)] * dy[i]
                    };
                }
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
    fn prelu_forward_hand_values_and_gradient() {
        let x = Blob::from_data(&[1, 2, 2], vec![-1.0, 2.0, -4.0, 3.0]).unwrap();
        let mut h = Harness::new("type: PReLU", vec![x.clone()]).unwrap();
        assert_eq!(h.params[0].data, vec![0.25, 0.25]);
        h.params[0].data = vec![0.5, 0.1];
        h.forward().unwrap();
        assert_close(&h.top[0].data, &[-0.5, 2.0, -0.4, 3.0], 1e-7);
        let mut s = Harness::new(
            "type: PReLU\nprelu_param: { channel_shared: true }",
            vec![x],
        )
        .unwrap();
        assert_eq!(s.params[0].shape, vec![1]);
        s.forward().unwrap();
        assert_close(&s.top[0].data, &[-0.25, 2.0, -1.0, 3.0], 1e-7);
        check_layer_from(
            "type: PReLU\nprelu_param: { filler: { type: uniform, min: 0.1, max: 0.4 } }",
            &[&[2, 3, 2, 2]],
        );
        check_layer_from(
            "type: PReLU\nprelu_param: { channel_shared: true }",
            &[&[2, 3, 4]],
        );
    }

    #[test]
    fn prelu_in_place_matches_out_of_place() {
        let x = Blob::from_data(&[2, 2], vec![-1.0, 2.0, -4.0, 3.0]).unwrap();
        let dy = vec![0.5, -1.0, 2.0, 1.5];
        let mut h = Harness::new("type: PReLU", vec![x.clone()]).unwrap();
        h.params[0].data = vec![0.5, 0.1];
        h.forward().unwrap();
        h.top[0].diff = dy.clone();
        h.backward(&[true]).unwrap();
        // In place: one blob, empty bottom in forward, empty top in backward.
        let mut blob = x.clone();
        let mut params = [h.params[0].clone()];
        params[0].diff = vec![0.0; 2];
        let l = &mut h.layer;
        l.reshape(&[], &mut [&mut blob]).unwrap();
        l.forward(&[], &mut [&mut blob], &mut [&mut params[0]])
            .unwrap();
        assert_eq!(blob.data, h.top[0].data);
        blob.diff = dy;
        l.backward(&[], &[true], &mut [&mut blob], &mut [&mut params[0]])
            .unwrap();
        assert_close(&blob.diff, &h.bottom[0].diff, 1e-6);
        assert_close(&params[0].diff, &h.params[0].diff, 1e-6);
    }

    #[test]
    fn prelu_in_place_matches_on_random_input() {
        crate::testing::assert_inplace_matches(
            "type: PReLU\nprelu_param: { filler: { type: uniform, min: 0.1, max: 0.4 } }",
            &[2, 3, 4],
        );
    }
}
