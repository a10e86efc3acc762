//! `Eltwise`: element-wise SUM (with per-bottom `coeff`), PROD or MAX of equally shaped bottoms.

use super::{BlobCounts, Layer};
use crate::proto::eltwise_parameter::EltwiseOp;
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Eltwise` layer.
pub struct Eltwise {
    op: EltwiseOp,
    coeff: Vec<f32>,
    stable_prod_grad: bool,
    /// MAX: which bottom won each element.
    argmax: Vec<u32>,
}

/// Creates `Eltwise` from `eltwise_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let e = p.eltwise_param.clone().unwrap_or_default();
    let op = e.operation();
    crate::ensure!(
        e.coeff.is_empty() || op == EltwiseOp::Sum,
        "eltwise_param.coeff is only allowed with operation SUM"
    );
    crate::ensure!(
        e.coeff.is_empty() || e.coeff.len() == p.bottom.len() || p.bottom.is_empty(),
        "eltwise_param needs one coeff per bottom: {} coeff(s) for {} bottoms",
        e.coeff.len(),
        p.bottom.len()
    );
    Ok(Box::new(Eltwise {
        op,
        coeff: e.coeff.clone(),
        stable_prod_grad: e.stable_prod_grad(),
        argmax: Vec::new(),
    }))
}

impl Layer for Eltwise {
    fn backward_reads_top(&self) -> super::TopUse {
        if matches!(self.op, EltwiseOp::Sum) {
            super::TopUse::Nothing
        } else {
            super::TopUse::Values
        }
    }
    fn type_name(&self) -> &'static str {
        "Eltwise"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            min_bottom: Some(2),
            exact_top: Some(1),
            ..Default::default()
        }
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        for (i, b) in bottom.iter().enumerate().skip(1) {
            crate::ensure!(
                b.shape == bottom[0].shape,
                "all bottoms must have the same shape: bottom 0 is {}, bottom {i} is {}",
                bottom[0].shape_string(),
                b.shape_string()
            );
        }
        crate::ensure!(
            self.coeff.is_empty() || self.coeff.len() == bottom.len(),
            "eltwise_param needs one coeff per bottom: {} coeff(s) for {} bottoms",
            self.coeff.len(),
            bottom.len()
        );
        top[0].reshape(&bottom[0].shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let y = &mut top[0].data;
        match self.op {
            EltwiseOp::Sum => {
                y.iter_mut().for_each(|v| *v = 0.0);
                for (i, b) in bottom.iter().enumerate() {
                    let c = self.coeff.get(i).copied().unwrap_or(1.0);
                    y.iter_mut().zip(&b.data).for_each(|(y, x)| *y += c * x);
                }
            }
            EltwiseOp::Prod => {
                y.copy_from_slice(&bottom[0].data);
                for b in &bottom[1..] {
                    y.iter_mut().zip(&b.data).for_each(|(y, x)| *y *= x);
                }
            }
            EltwiseOp::Max => {
                self.argmax = vec![0; y.len()];
                y.copy_from_slice(&bottom[0].data);
                for (bi, b) in bottom.iter().enumerate().skip(1) {
                    for (j, &x) in b.data.iter().enumerate() {
                        if x > y[j] {
                            y[j] = x;
                            self.argmax[j] = bi as u32;
                        }
                    }
                }
            }
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
        let (y, dy) = (&top[0].data, &top[0].diff);
        let n = y.len();
        for i in 0..bottom.len() {
            if !down[i] {
                continue;
            }
            match self.op {
                EltwiseOp::Sum => {
                    let c = self.coeff.get(i).copied().unwrap_or(1.0);
                    bottom[i]
                        .diff
                        .iter_mut()
                        .zip(dy)
                        .for_each(|(d, g)| *d += c * g);
                }
                EltwiseOp::Prod => {
                    if self.stable_prod_grad {
                        let mut others = vec![1f32; n];
                        for (j, b) in bottom.iter().enumerate() {
                            if j != i {
                                others.iter_mut().zip(&b.data).for_each(|(o, x)| *o *= x);
                            }
                        }
                        for ((d, g), o) in bottom[i].diff.iter_mut().zip(dy).zip(&others) {
                            *d += g * o;
                        }
                    } else {
                        let b = &mut *bottom[i];
                        for k in 0..n {
                            b.diff[k] += dy[k] * y[k] / b.data[k];
                        }
                    }
                }
                EltwiseOp::Max => {
                    let d = &mut bottom[i].diff;
                    for (k, &w) in self.argmax.iter().enumerate() {
                        if w as usize == i {
                            d[k] += dy[k];
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
    use crate::testing::{assert_close, Harness};
    use crate::testing::{
        check_layer_from, check_layer_with, layer_from_yaml, run_forward, GradientChecker,
    };
    use crate::Blob;

    const A: [f32; 4] = [1.0, -2.0, 3.0, 0.5];
    const B: [f32; 4] = [2.0, 4.0, -1.0, 0.25];
    const C: [f32; 4] = [0.0, 5.0, 2.0, -3.0];

    #[test]
    fn forward_hand_values() {
        let s: &[usize] = &[2, 2];
        let mut l = layer_from_yaml(
            "type: Eltwise\nbottom: [a, b, c]\neltwise_param: { coeff: [1, -1, 0.5] }",
        );
        let y = run_forward(&mut *l, &[(s, &A), (s, &B), (s, &C)]);
        assert_close(&y[0].data, &[-1.0, -3.5, 5.0, -1.25], 1e-6);
        let mut l = layer_from_yaml("type: Eltwise\neltwise_param: { operation: PROD }");
        let y = run_forward(&mut *l, &[(s, &A), (s, &B), (s, &C)]);
        assert_close(&y[0].data, &[0.0, -40.0, -6.0, -0.375], 1e-6);
        let mut l = layer_from_yaml("type: Eltwise\neltwise_param: { operation: MAX }");
        let y = run_forward(&mut *l, &[(s, &A), (s, &B), (s, &C)]);
        assert_close(&y[0].data, &[2.0, 5.0, 3.0, 0.5], 1e-6);
    }

    #[test]
    fn max_backward_routes_to_argmax() {
        let s = [2, 2];
        let mut h = Harness::new(
            "type: Eltwise\neltwise_param: { operation: MAX }",
            vec![
                Blob::from_data(&s, A.to_vec()).unwrap(),
                Blob::from_data(&s, B.to_vec()).unwrap(),
                Blob::from_data(&s, C.to_vec()).unwrap(),
            ],
        )
        .unwrap();
        h.forward().unwrap();
        h.top[0].diff = vec![1.0, 2.0, 3.0, 4.0];
        h.backward(&[true, true, true]).unwrap();
        assert_eq!(h.bottom[0].diff, vec![0.0, 0.0, 3.0, 4.0]);
        assert_eq!(h.bottom[1].diff, vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(h.bottom[2].diff, vec![0.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Eltwise\nbottom: [a, b, c]\neltwise_param: { coeff: [1, -2, 0.5] }",
            &[&[2, 3, 2], &[2, 3, 2], &[2, 3, 2]],
        );
        check_layer_from(
            "type: Eltwise\neltwise_param: { operation: PROD }",
            &[&[2, 3, 2], &[2, 3, 2], &[2, 3, 2]],
        );
        check_layer_from(
            "type: Eltwise\neltwise_param: { operation: PROD, stable_prod_grad: false }",
            &[&[2, 3], &[2, 3]],
        );
        // MAX is piecewise linear: a smaller step keeps every perturbation on one side of a tie.
        check_layer_with(
            "type: Eltwise\neltwise_param: { operation: MAX }",
            &[&[2, 3, 2], &[2, 3, 2], &[2, 3, 2]],
            &GradientChecker {
                step: 1e-3,
                threshold: 1e-2,
                ..Default::default()
            },
        );
    }
}
