//! `InnerProduct`: fully connected, `y = x W^T + b` with everything from `axis` on flattened.

use super::{BlobCounts, Layer, SetupCtx};
use crate::math::conv_gemm;
use crate::proto::LayerParameter;
use crate::{math, Blob, Result};

/// `InnerProduct` layer. Weight is `N x K` (or `K x N` with `transpose`), bias `N`.
pub struct InnerProduct {
    num_output: usize,
    bias_term: bool,
    transpose: bool,
    axis: i32,
    weight_filler: crate::proto::FillerParameter,
    bias_filler: crate::proto::FillerParameter,
    m: usize,
    k: usize,
    ones: Vec<f32>,
}

/// Creates `InnerProduct` from `inner_product_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let ip = p.inner_product_param.clone().unwrap_or_default();
    crate::ensure!(
        ip.num_output() > 0,
        "inner_product_param.num_output must be set and positive"
    );
    Ok(Box::new(InnerProduct {
        num_output: ip.num_output() as usize,
        bias_term: ip.bias_term(),
        transpose: ip.transpose(),
        axis: ip.axis(),
        weight_filler: ip.weight_filler.clone().unwrap_or_default(),
        bias_filler: ip.bias_filler.clone().unwrap_or_default(),
        m: 0,
        k: 0,
        ones: Vec::new(),
    }))
}

impl InnerProduct {
    /// Forward `y = x op(W) + b` for `m` rows; shared with `DropConnect`.
    pub fn forward_with(&self, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
        let (m, n, k) = (self.m, self.num_output, self.k);
        if !self.transpose && (1..=conv_gemm::FEW_ROWS).contains(&m) && n * k >= 1 << 20 {
            // A few rows against a big weight: bound by reading W once.
            conv_gemm::few_rows_times_wt(m, n, k, x, w, y);
        } else {
            math::gemm(false, !self.transpose, m, n, k, 1.0, x, w, 0.0, y);
        }
        if let Some(b) = b {
            math::gemm(false, false, m, n, 1, 1.0, &self.ones, b, 1.0, y);
        }
    }
}

impl Layer for InnerProduct {
    fn type_name(&self) -> &'static str {
        "InnerProduct"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let axis = bottom[0].canonical_axis(self.axis)?;
        self.k = bottom[0].count_from(axis);
        let wshape = if self.transpose {
            [self.k, self.num_output]
        } else {
            [self.num_output, self.k]
        };
        let w = ctx.filled(&wshape, &self.weight_filler)?;
        let mut params = vec![w];
        if self.bias_term {
            let b = ctx.filled(&[self.num_output], &self.bias_filler)?;
            params.push(b);
        }
        Ok(params)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let axis = bottom[0].canonical_axis(self.axis)?;
        let k = bottom[0].count_from(axis);
        crate::ensure!(
            k == self.k,
            "input size changed: the weights expect {} values per item from axis {axis} on, but bottom has shape {}",
            self.k,
            bottom[0].shape_string()
        );
        self.m = bottom[0].count_range(0, axis);
        let mut shape = bottom[0].shape[..axis].to_vec();
        shape.push(self.num_output);
        top[0].reshape(&shape);
        if self.ones.len() != self.m {
            self.ones = vec![1.0; self.m];
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let b = if self.bias_term {
            Some(params[1].data.as_slice())
        } else {
            None
        };
        self.forward_with(&bottom[0].data, &params[0].data, b, &mut top[0].data);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let (m, n, k) = (self.m, self.num_output, self.k);
        let dy = &top[0].diff;
        // dW (+)= dy^T x  (or x^T dy when transposed)
        if self.transpose {
            math::gemm(
                true,
                false,
                k,
                n,
                m,
                1.0,
                &bottom[0].data,
                dy,
                1.0,
                &mut params[0].diff,
            );
        } else {
            math::gemm(
                true,
                false,
                n,
                k,
                m,
                1.0,
                dy,
                &bottom[0].data,
                1.0,
                &mut params[0].diff,
            );
        }
        if self.bias_term {
            math::gemv(true, m, n, 1.0, dy, &self.ones, 1.0, &mut params[1].diff);
        }
        if down[0] {
            math::gemm(
                false,
                self.transpose,
                m,
                k,
                n,
                1.0,
                dy,
                &params[0].data,
                1.0,
                &mut bottom[0].diff,
            );
        }
        Ok(())
    }
    fn forward_flops(&self, _: &[&Blob], _: &[&Blob]) -> Option<f64> {
        Some(2.0 * (self.m * self.num_output * self.k) as f64)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    fn naive(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = b[j] + (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>();
            }
        }
        y
    }

    #[test]
    fn forward_matches_naive_and_hand_values() {
        let x = Blob::from_data(&[2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0]).unwrap();
        let mut h = Harness::new(
            "type: InnerProduct\ninner_product_param: { num_output: 2, bias_filler: { type: constant, value: 0.5 } }",
            vec![x],
        )
        .unwrap();
        h.params[0].data = vec![1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        h.forward().unwrap();
        // row 0: 1-3+0.5 = -1.5, 3+0.5 = 3.5; row 1: -1-1+0.5 = -1.5, 0+0.5 = 0.5
        assert_close(&h.top[0].data, &[-1.5, 3.5, -1.5, 0.5], 1e-6);
        let x: Vec<f32> = (0..4 * 2 * 3).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut h = Harness::new(
            "type: InnerProduct\ninner_product_param: { num_output: 5, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            vec![Blob::from_data(&[4, 2, 3], x.clone()).unwrap()],
        )
        .unwrap();
        h.forward().unwrap();
        let expect = naive(&x, &h.params[0].data, &h.params[1].data, 4, 5, 6);
        assert_close(&h.top[0].data, &expect, 1e-5);
        assert_eq!(h.top[0].shape, vec![4, 5]);
    }

    #[test]
    fn transpose_and_axis() {
        let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.1).collect();
        let mut h = Harness::new(
            "type: InnerProduct\ninner_product_param: { num_output: 3, axis: 2, transpose: true, bias_term: false, weight_filler: { type: gaussian } }",
            vec![Blob::from_data(&[2, 3, 4], x.clone()).unwrap()],
        )
        .unwrap();
        assert_eq!(h.params[0].shape, vec![4, 3]);
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 3, 3]);
        let w = &h.params[0].data;
        for r in 0..6 {
            for j in 0..3 {
                let e: f32 = (0..4).map(|p| x[r * 4 + p] * w[p * 3 + j]).sum();
                assert!((h.top[0].data[r * 3 + j] - e).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: InnerProduct\ninner_product_param: { num_output: 4, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[3, 2, 3]],
        );
        check_layer_from(
            "type: InnerProduct\ninner_product_param: { num_output: 3, transpose: true, axis: 2, weight_filler: { type: gaussian } }",
            &[&[2, 2, 5]],
        );
    }
}
