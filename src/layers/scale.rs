//! `Scale`: multiplies bottom 0 by a blob broadcast over axes `[axis, axis + num_axes)` of it;
//! the blob is learned (one bottom) or is bottom 1. Optional learned bias (`bias_term`).

use super::broadcast::{add_bias, bias_grad, Operand};
use super::{BlobCounts, Inplace, Layer, SetupCtx};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{filler, Blob, Result};

/// `Scale` layer.
pub struct Scale {
    op: Operand,
    filler: FillerParameter,
    bias_term: bool,
    bias_filler: FillerParameter,
    /// Copy of the input when running in place (backward needs `x` for the factor's gradient).
    x_saved: Vec<f32>,
}

/// Creates `Scale` from `scale_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let s = p.scale_param.clone().unwrap_or_default();
    Ok(Box::new(Scale {
        op: Operand {
            axis: s.axis(),
            num_axes: s.num_axes(),
            ..Default::default()
        },
        filler: s.filler.clone().unwrap_or_else(|| filler::constant(1.0)),
        bias_term: s.bias_term(),
        bias_filler: s
            .bias_filler
            .clone()
            .unwrap_or_else(|| filler::constant(0.0)),
        x_saved: Vec::new(),
    }))
}

impl Layer for Scale {
    fn type_name(&self) -> &'static str {
        "Scale"
    }
    fn blob_counts(&self) -> BlobCounts {
        Operand::blob_counts()
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let shape = self.op.set_up(bottom)?;
        let mut params = Vec::new();
        if self.op.learned {
            let s = ctx.filled(&shape, &self.filler)?;
            params.push(s);
        }
        if self.bias_term {
            let b = ctx.filled(&shape, &self.bias_filler)?;
            params.push(b);
        }
        Ok(params)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        self.op.reshape(bottom, top)
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let g = self.op.g;
        let s = self.op.values(bottom, params);
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
            let bi = usize::from(self.op.learned);
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
        let g = self.op.g;
        let inplace = top.is_empty();
        let dy = Inplace::top_diff(top, bottom).to_vec();
        if self.bias_term {
            let bi = usize::from(self.op.learned);
            bias_grad(g, &dy, &mut params[bi].diff);
        }
        // Gradient of the factor: sum of dy * x.
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
        if let Some(target) = self.op.diff(down, bottom, params) {
            target.iter_mut().zip(&ds).for_each(|(t, v)| *t += v);
        }
        if down[0] {
            let s = if self.op.learned {
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
