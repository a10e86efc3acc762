//! `Reduction`: SUM, ASUM, SUMSQ or MEAN over all axes from `axis` on, times `coeff`.

use super::{BlobCounts, Layer};
use crate::proto::reduction_parameter::ReductionOp;
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Reduction` layer.
pub struct Reduction {
    op: ReductionOp,
    axis: i32,
    coeff: f32,
}

/// Creates `Reduction` from `reduction_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let r = p.reduction_param.unwrap_or_default();
    Ok(Box::new(Reduction {
        op: r.operation(),
        axis: r.axis(),
        coeff: r.coeff(),
    }))
}

impl Reduction {
    fn split(&self, b: &Blob) -> Result<(usize, usize, usize)> {
        let a = b.canonical_axis(self.axis)?;
        Ok((a, b.count_range(0, a), b.count_from(a)))
    }
}

impl Layer for Reduction {
    fn type_name(&self) -> &'static str {
        "Reduction"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn kink(&self) -> Option<(f32, f32)> {
        (self.op == ReductionOp::Asum).then_some((0.0, 0.01))
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (a, _, _) = self.split(bottom[0])?;
        top[0].reshape(&bottom[0].shape[..a]);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (_, num, dim) = self.split(bottom[0])?;
        let x = &bottom[0].data;
        for i in 0..num {
            let s = &x[i * dim..(i + 1) * dim];
            let v: f32 = match self.op {
                ReductionOp::Sum => s.iter().sum(),
                ReductionOp::Asum => s.iter().map(|v| v.abs()).sum(),
                ReductionOp::Sumsq => s.iter().map(|v| v * v).sum(),
                ReductionOp::Mean => s.iter().sum::<f32>() / dim.max(1) as f32,
            };
            top[0].data[i] = self.coeff * v;
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
        if !down[0] {
            return Ok(());
        }
        let (_, num, dim) = self.split(bottom[0])?;
        let b = &mut *bottom[0];
        for i in 0..num {
            let g = self.coeff * top[0].diff[i];
            for j in i * dim..(i + 1) * dim {
                let x = b.data[j];
                b.diff[j] += match self.op {
                    ReductionOp::Sum => g,
                    ReductionOp::Asum => {
                        g * if x > 0.0 {
                            1.0
                        } else if x < 0.0 {
                            -1.0
                        } else {
                            0.0
                        }
                    }
                    ReductionOp::Sumsq => 2.0 * g * x,
                    ReductionOp::Mean => g / dim.max(1) as f32,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    const X: [f32; 6] = [1.0, -2.0, 3.0, -4.0, 5.0, 0.5];

    #[test]
    fn forward_hand_values() {
        let cases = [
            ("SUM", 1, vec![2.0, 1.5]),
            ("ASUM", 1, vec![6.0, 9.5]),
            ("SUMSQ", 1, vec![14.0, 41.25]),
            ("MEAN", 1, vec![2.0 / 3.0, 0.5]),
        ];
        for (op, axis, expect) in cases {
            let mut l = layer_from_yaml(&format!(
                "type: Reduction\nreduction_param: {{ operation: {op}, axis: {axis} }}"
            ));
            let y = run_forward(&mut *l, &[(&[2, 3], &X)]);
            assert_eq!(y[0].shape, vec![2]);
            assert_close(&y[0].data, &expect, 1e-5);
        }
        // Default axis 0: one scalar, times coeff.
        let mut l = layer_from_yaml("type: Reduction\nreduction_param: { coeff: 2 }");
        let y = run_forward(&mut *l, &[(&[2, 3], &X)]);
        assert!(y[0].shape.is_empty());
        assert_close(&y[0].data, &[7.0], 1e-5);
    }

    #[test]
    fn gradients() {
        for op in ["SUM", "ASUM", "SUMSQ", "MEAN"] {
            check_layer_from(
                &format!(
                    "type: Reduction\nreduction_param: {{ operation: {op}, axis: 1, coeff: -1.5 }}"
                ),
                &[&[2, 3, 2]],
            );
        }
        check_layer_from("type: Reduction", &[&[2, 3]]);
    }
}
