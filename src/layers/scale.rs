//! `Scale`: multiplies bottom 0 by a blob broadcast over axes `[axis, axis + num_axes)` of it;
//! the blob is learned (one bottom) or is bottom 1. Optional learned bias (`bias_term`).

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{filler, Blob, Result};

/// Broadcast geometry shared by `Scale` and `Bias`: bottom 0 is `outer x dim x inner`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Bcast {
    pub outer: usize,
    pub dim: usize,
    pub inner: usize,
}

/// The shape of the learned blob for `axis`/`num_axes` on bottom `x`.
pub(super) fn param_shape(x: &Blob, axis: i32, num_axes: i32) -> Result<Vec<usize>> {
    crate::ensure!(
        num_axes >= -1,
        "num_axes must be non-negative, or -1 to extend to the end of bottom[0], got {num_axes}"
    );
    // A scalar (num_axes 0) may use any axis, even one past the end.
    let a = if num_axes == 0 && axis as usize == x.num_axes() {
        x.num_axes()
    } else {
        x.canonical_axis(axis)?
    };
    let end = if num_axes == -1 {
        x.num_axes()
    } else {
        a + num_axes as usize
    };
    crate::ensure!(
        end <= x.num_axes(),
        "axis {axis} + num_axes {num_axes} runs past the end of bottom[0] (shape {})",
        x.shape_string()
    );
    Ok(x.shape[a..end].to_vec())
}

/// Checks that `p` (shape of the factor) matches `x` from `axis` on and returns the geometry.
pub(super) fn geometry(x: &Blob, p_shape: &[usize], axis: i32) -> Result<Bcast> {
    let a = if p_shape.is_empty() {
        0
    } else {
        x.canonical_axis(axis)?
    };
    crate::ensure!(
        a + p_shape.len() <= x.num_axes() && x.shape[a..a + p_shape.len()] == *p_shape,
        "the broadcast blob of shape {} does not match bottom[0] (shape {}) from axis {a}",
        crate::blob::shape_str(p_shape),
        x.shape_string()
    );
    let dim: usize = p_shape.iter().product();
    Ok(Bcast {
        outer: x.count_range(0, a),
        dim,
        inner: x.count_from(a + p_shape.len()),
    })
}

/// `db[d] += sum over outer, inner of dy`.
pub(super) fn bias_grad(g: Bcast, dy: &[f32], db: &mut [f32]) {
    for o in 0..g.outer {
        for (d, acc) in db.iter_mut().enumerate().take(g.dim) {
            let base = (o * g.dim + d) * g.inner;
            *acc += dy[base..base + g.inner].iter().sum::<f32>();
        }
    }
}

/// `y[o, d, i] = x[o, d, i] + b[d]` (`x` may be `y`'s old contents).
pub(super) fn add_bias(g: Bcast, b: &[f32], y: &mut [f32]) {
    for o in 0..g.outer {
        for (d, &bv) in b.iter().enumerate().take(g.dim) {
            let base = (o * g.dim + d) * g.inner;
            y[base..base + g.inner].iter_mut().for_each(|v| *v += bv);
        }
    }
}

/// `Scale` layer.
pub struct Scale {
    axis: i32,
    num_axes: i32,
    filler: FillerParameter,
    bias_term: bool,
    bias_filler: FillerParameter,
    /// True when the factor is learned (one bottom).
    learned: bool,
    g: Bcast,
    /// Copy of the input when running in place (backward needs `x` for the factor's gradient).
    x_saved: Vec<f32>,
}

/// Creates `Scale` from `scale_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let s = p.scale_param.clone().unwrap_or_default();
    Ok(Box::new(Scale {
        axis: s.axis(),
        num_axes: s.num_axes(),
        filler: s.filler.clone().unwrap_or_else(|| filler::constant(1.0)),
        bias_term: s.bias_term(),
        bias_filler: s
            .bias_filler
            .clone()
            .unwrap_or_else(|| filler::constant(0.0)),
        learned: true,
        g: Bcast::default(),
        x_saved: Vec::new(),
    }))
}

impl Layer for Scale {
    fn type_name(&self) -> &'static str {
        "Scale"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            min_bottom: Some(1),
            max_bottom: Some(2),
            exact_top: Some(1),
            ..Default::default()
        }
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.learned = bottom.len() == 1;
        let shape = if self.learned {
            param_shape(bottom[0], self.axis, self.num_axes)?
        } else {
            bottom[1].shape.clone()
        };
        let mut params = Vec::new();
        if self.learned {
            let mut s = Blob::new(&shape);
            filler::fill(&self.filler, &mut s, ctx.rng)?;
            params.push(s);
        }
        if self.bias_term {
            let mut b = Blob::new(&shape);
            filler::fill(&self.bias_filler, &mut b, ctx.rng)?;
            params.push(b);
        }
        Ok(params)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let x = bottom.first().copied().unwrap_or(&*top[0]);
        // The factor's shape is fixed by setup; find it from bottom 1 or from the axis rule.
        let p_shape = if self.learned {
            param_shape(x, self.axis, self.num_axes)?
        } else {
            bottom[1].shape.clone()
        };
        self.g = geometry(x, &p_shape, self.axis)?;
        if let Some(b) = bottom.first() {
            top[0].reshape(&b.shape);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let g = self.g;
        let s: Vec<f32> = if self.learned {
            params[0].data.clone()
        } else {
            bottom[1].data.clone()
        };
        if bottom.is_empty() {
            self.x_saved.clone_from(&top[0].data);
        }
        let x: &[f32] = match bottom.first() {
            Some(b) => &b.data,
            None => &self.x_saved,
        };
        let y = &mut top[0].data;
        for o in 0..g.outer {
            for (d, &sd) in s.iter().enumerate().take(g.dim) {
                let base = (o * g.dim + d) * g.inner;
                for i in base..base + g.inner {
                    y[i] = x[i] * sd;
                }
            }
        }
        if self.bias_term {
            let bi = usize::from(self.learned);
            add_bias(g, &params[bi].data, y);
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
        let g = self.g;
        let inplace = top.is_empty();
        let dy: Vec<f32> = match top.first() {
            Some(t) => t.diff.clone(),
            None => bottom[0].diff.clone(),
        };
        if self.bias_term {
            let bi = usize::from(self.learned);
            bias_grad(g, &dy, &mut params[bi].diff);
        }
        // Gradient of the factor: sum of dy * x.
        let want_s = self.learned || down.get(1).copied().unwrap_or(false);
        if want_s {
            let mut ds = vec![0f32; g.dim];
            {
                let x: &[f32] = if inplace {
                    &self.x_saved
                } else {
                    &bottom[0].data
                };
                for o in 0..g.outer {
                    for (d, acc) in ds.iter_mut().enumerate() {
                        let base = (o * g.dim + d) * g.inner;
                        *acc += (base..base + g.inner).map(|i| dy[i] * x[i]).sum::<f32>();
                    }
                }
            }
            let target = if self.learned {
                &mut params[0].diff
            } else {
                &mut bottom[1].diff
            };
            target.iter_mut().zip(&ds).for_each(|(t, v)| *t += v);
        }
        if down[0] {
            let s: Vec<f32> = if self.learned {
                params[0].data.clone()
            } else {
                bottom[1].data.clone()
            };
            let dx = &mut bottom[0].diff;
            for o in 0..g.outer {
                for (d, &sd) in s.iter().enumerate().take(g.dim) {
                    let base = (o * g.dim + d) * g.inner;
                    for i in base..base + g.inner {
                        let v = dy[i] * sd;
                        if inplace {
                            dx[i] = v;
                        } else {
                            dx[i] += v;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::SetupCtx;
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, Harness};
    use crate::Blob;
    use rand::SeedableRng;

    #[test]
    fn forward_learned_and_bottom_factor() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut h = Harness::new(
            "type: Scale\nscale_param: { bias_term: true }",
            vec![Blob::from_data(&[2, 3, 2], x.clone()).unwrap()],
        )
        .unwrap();
        assert_eq!(h.params[0].data, vec![1.0; 3]); // default filler 1
        h.params[0].data = vec![2.0, -1.0, 0.5];
        h.params[1].data = vec![1.0, 0.0, -1.0];
        h.forward().unwrap();
        let s = [2.0, -1.0, 0.5];
        let b = [1.0, 0.0, -1.0];
        let expect: Vec<f32> = (0..12)
            .map(|i| x[i] * s[(i / 2) % 3] + b[(i / 2) % 3])
            .collect();
        assert_close(&h.top[0].data, &expect, 1e-6);
        // Factor from bottom 1 over axes 1..3, and a scalar factor.
        let f: Vec<f32> = (0..6).map(|i| i as f32 - 2.0).collect();
        let mut h = Harness::new(
            "type: Scale",
            vec![
                Blob::from_data(&[2, 3, 2], x.clone()).unwrap(),
                Blob::from_data(&[3, 2], f.clone()).unwrap(),
            ],
        )
        .unwrap();
        h.forward().unwrap();
        let expect: Vec<f32> = (0..12).map(|i| x[i] * f[i % 6]).collect();
        assert_close(&h.top[0].data, &expect, 1e-6);
        let mut h = Harness::new(
            "type: Scale\nscale_param: { axis: 0, num_axes: 0 }",
            vec![Blob::from_data(&[2, 3, 2], x.clone()).unwrap()],
        )
        .unwrap();
        assert!(h.params[0].shape.is_empty());
        h.params[0].data = vec![3.0];
        h.forward().unwrap();
        let expect: Vec<f32> = x.iter().map(|v| v * 3.0).collect();
        assert_close(&h.top[0].data, &expect, 1e-6);
    }

    #[test]
    fn in_place_matches_out_of_place() {
        let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
        let yaml = "type: Scale\nscale_param: { bias_term: true, filler: { type: gaussian }, bias_filler: { type: gaussian } }";
        let mut h =
            Harness::new(yaml, vec![Blob::from_data(&[2, 3, 2], x.clone()).unwrap()]).unwrap();
        h.forward().unwrap();
        let dy: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.5).collect();
        h.top[0].diff = dy.clone();
        h.bottom[0].diff = vec![0.0; 12];
        h.backward(&[true]).unwrap();
        let mut l = layer_from_yaml(yaml);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1701);
        let b = Blob::from_data(&[2, 3, 2], x).unwrap();
        let mut params = l.setup(&[&b], &mut SetupCtx { rng: &mut rng }).unwrap();
        let mut shared = b.clone();
        let mut pr: Vec<&mut Blob> = params.iter_mut().collect();
        l.reshape(&[], &mut [&mut shared]).unwrap();
        l.forward(&[], &mut [&mut shared], &mut pr).unwrap();
        assert_close(&shared.data, &h.top[0].data, 1e-6);
        shared.diff = dy;
        l.backward(&[], &[true], &mut [&mut shared], &mut pr)
            .unwrap();
        assert_close(&shared.diff, &h.bottom[0].diff, 1e-6);
        assert_close(&params[0].diff, &h.params[0].diff, 1e-5);
        assert_close(&params[1].diff, &h.params[1].diff, 1e-5);
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Scale\nscale_param: { bias_term: true, filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[2, 3, 4]],
        );
        check_layer_from(
            "type: Scale\nscale_param: { axis: 1, num_axes: -1, filler: { type: gaussian } }",
            &[&[2, 3, 2]],
        );
        check_layer_from(
            "type: Scale\nscale_param: { axis: 1 }",
            &[&[2, 3, 4], &[3, 4]],
        );
    }
}
