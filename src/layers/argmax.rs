//! `ArgMax`: indices (and with `out_max_val` the values) of the `top_k` largest entries, per item
//! (everything after axis 0 flattened) or along `axis`. No backward.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `ArgMax` layer.
pub struct ArgMax {
    out_max_val: bool,
    top_k: usize,
    axis: Option<i32>,
}

/// Creates `ArgMax` from `argmax_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let a = p.argmax_param.unwrap_or_default();
    crate::ensure!(a.top_k() >= 1, "argmax_param.top_k must be at least 1");
    Ok(Box::new(ArgMax {
        out_max_val: a.out_max_val(),
        top_k: a.top_k() as usize,
        axis: a.axis,
    }))
}

/// Indices of the `k` largest of `v` (ties: the lower index first), largest first.
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

impl Layer for ArgMax {
    fn type_name(&self) -> &'static str {
        "ArgMax"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allow_force_backward(&self, _: usize) -> bool {
        false
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let b = bottom[0];
        let shape = match self.axis {
            Some(axis) => {
                let a = b.canonical_axis(axis)?;
                crate::ensure!(
                    self.top_k <= b.shape[a],
                    "top_k {} is larger than axis {a} of {}",
                    self.top_k,
                    b.shape_string()
                );
                let mut s = b.shape.clone();
                s[a] = self.top_k;
                s
            }
            None => {
                let dim = b.count_from(1.min(b.num_axes()));
                crate::ensure!(
                    self.top_k <= dim,
                    "top_k {} is larger than the {dim} values per item of {}",
                    self.top_k,
                    b.shape_string()
                );
                let mut s = vec![1; b.num_axes().max(3)];
                s[0] = b.legacy_dim(0);
                s[2] = self.top_k;
                if self.out_max_val {
                    s[1] = 2;
                }
                s
            }
        };
        top[0].reshape(&shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let b = bottom[0];
        let k = self.top_k;
        let y = &mut top[0].data;
        match self.axis {
            Some(axis) => {
                let a = b.canonical_axis(axis)?;
                let (outer, dim, inner) = (b.count_range(0, a), b.shape[a], b.count_from(a + 1));
                let mut v = vec![0f32; dim];
                for o in 0..outer {
                    for i in 0..inner {
                        for (d, slot) in v.iter_mut().enumerate() {
                            *slot = b.data[(o * dim + d) * inner + i];
                        }
                        for (j, &d) in top_k(&v, k).iter().enumerate() {
                            y[(o * k + j) * inner + i] =
                                if self.out_max_val { v[d] } else { d as f32 };
                        }
                    }
                }
            }
            None => {
                let num = b.legacy_dim(0);
                let dim = b.count() / num.max(1);
                for i in 0..num {
                    let v = &b.data[i * dim..(i + 1) * dim];
                    let best = top_k(v, k);
                    for (j, &d) in best.iter().enumerate() {
                        if self.out_max_val {
                            y[i * 2 * k + j] = d as f32;
                            y[i * 2 * k + k + j] = v[d];
                        } else {
                            y[i * k + j] = d as f32;
                        }
                    }
                }
            }
        }
        Ok(())
    }
    fn backward(
        &mut self,
        _: &[&Blob],
        down: &[bool],
        _: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        crate::ensure!(
            !down.iter().any(|&d| d),
            "ArgMax has no gradient; do not backpropagate through it"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{layer_from_yaml, run_forward, Harness};
    use crate::Blob;

    const X: [f32; 8] = [0.1, 0.9, 0.3, 0.5, 2.0, -1.0, 0.0, 3.0];

    #[test]
    fn per_item_indices_and_values() {
        let mut l = layer_from_yaml("type: ArgMax");
        let y = run_forward(&mut *l, &[(&[2, 4], &X)]);
        assert_eq!(y[0].shape, vec![2, 1, 1]);
        assert_eq!(y[0].data, vec![1.0, 3.0]);
        let mut l = layer_from_yaml("type: ArgMax\nargmax_param: { top_k: 2, out_max_val: true }");
        let y = run_forward(&mut *l, &[(&[2, 4], &X)]);
        assert_eq!(y[0].shape, vec![2, 2, 2]);
        assert_eq!(y[0].data, vec![1.0, 3.0, 0.9, 0.5, 3.0, 0.0, 3.0, 2.0]);
    }

    #[test]
    fn along_axis() {
        // 2 x 2 x 2: argmax over axis 1
        let mut l = layer_from_yaml("type: ArgMax\nargmax_param: { axis: 1 }");
        let y = run_forward(&mut *l, &[(&[2, 2, 2], &X)]);
        assert_eq!(y[0].shape, vec![2, 1, 2]);
        assert_eq!(y[0].data, vec![1.0, 0.0, 0.0, 1.0]);
        let mut l = layer_from_yaml("type: ArgMax\nargmax_param: { axis: -1, out_max_val: true }");
        let y = run_forward(&mut *l, &[(&[2, 2, 2], &X)]);
        assert_eq!(y[0].data, vec![0.9, 0.5, 2.0, 3.0]);
    }

    #[test]
    fn no_backward() {
        let mut h = Harness::new(
            "type: ArgMax",
            vec![Blob::from_data(&[2, 4], X.to_vec()).unwrap()],
        )
        .unwrap();
        h.forward().unwrap();
        assert!(h.backward(&[true]).is_err());
        assert!(h.backward(&[false]).is_ok());
        assert!(!h.layer.allow_force_backward(0));
    }
}
