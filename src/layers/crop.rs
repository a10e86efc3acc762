//! `Crop`: crops bottom 0 to bottom 1's shape on the axes from `axis` on, starting at `offset`
//! (one value for all cropped axes, one per axis, or none for 0). Bottom 1 only gives the shape.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Crop` layer.
pub struct Crop {
    axis: i32,
    offset: Vec<usize>,
    /// Offset on every axis (0 before `axis`), from the last reshape.
    offsets: Vec<usize>,
}

/// Creates `Crop` from `crop_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let c = p.crop_param.clone().unwrap_or_default();
    Ok(Box::new(Crop {
        axis: c.axis(),
        offset: c.offset.iter().map(|&v| v as usize).collect(),
        offsets: Vec::new(),
    }))
}

/// Calls `f(top_row_start, bottom_row_start)` for every row (last axis) of the top.
fn for_rows(
    bshape: &[usize],
    tshape: &[usize],
    offsets: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    let n = tshape.len();
    let rows: usize = tshape[..n - 1].iter().product();
    let row = tshape[n - 1];
    let mut idx = vec![0usize; n - 1];
    for r in 0..rows {
        let mut b = 0;
        for d in 0..n - 1 {
            b = b * bshape[d] + idx[d] + offsets[d];
        }
        b = b * bshape[n - 1] + offsets[n - 1];
        f(r * row, b);
        for d in (0..n - 1).rev() {
            idx[d] += 1;
            if idx[d] < tshape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

impl Layer for Crop {
    fn type_name(&self) -> &'static str {
        "Crop"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(2, 1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
    #[allow(clippy::needless_range_loop)]
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (x, r) = (bottom[0], bottom[1]);
        crate::ensure!(
            x.num_axes() == r.num_axes(),
            "bottoms must have the same number of axes: {} vs {}",
            x.shape_string(),
            r.shape_string()
        );
        let a = x.canonical_axis(self.axis)?;
        let ncrop = x.num_axes() - a;
        crate::ensure!(
            self.offset.len() <= 1 || self.offset.len() == ncrop,
            "crop_param.offset needs 0, 1 or {ncrop} values (axes {a}..{}), got {}",
            x.num_axes(),
            self.offset.len()
        );
        let mut shape = x.shape.clone();
        self.offsets = vec![0; x.num_axes()];
        for i in a..x.num_axes() {
            let off = match self.offset.len() {
                0 => 0,
                1 => self.offset[0],
                _ => self.offset[i - a],
            };
            crate::ensure!(
                off + r.shape[i] <= x.shape[i],
                "cannot crop axis {i} of {} to size {} at offset {off}",
                x.shape_string(),
                r.shape[i]
            );
            shape[i] = r.shape[i];
            self.offsets[i] = off;
        }
        top[0].reshape(&shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let t = &mut *top[0];
        if t.count() == 0 {
            return Ok(());
        }
        let row = *t.shape.last().unwrap_or(&1);
        let tshape = t.shape.clone();
        let x = &bottom[0].data;
        let y = &mut t.data;
        for_rows(&bottom[0].shape, &tshape, &self.offsets, |ti, bi| {
            y[ti..ti + row].copy_from_slice(&x[bi..bi + row]);
        });
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if !down[0] || top[0].count() == 0 {
            return Ok(());
        }
        let row = *top[0].shape.last().unwrap_or(&1);
        let bshape = bottom[0].shape.clone();
        let dy = &top[0].diff;
        let dx = &mut bottom[0].diff;
        for_rows(&bshape, &top[0].shape, &self.offsets, |ti, bi| {
            dx[bi..bi + row]
                .iter_mut()
                .zip(&dy[ti..ti + row])
                .for_each(|(d, g)| *d += g);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_from_yaml, run_forward, Harness};
    use crate::Blob;

    fn naive(x: &[f32], xs: [usize; 4], ts: [usize; 4], off: [usize; 4]) -> Vec<f32> {
        let mut out = Vec::new();
        for n in 0..ts[0] {
            for c in 0..ts[1] {
                for h in 0..ts[2] {
                    for w in 0..ts[3] {
                        let i = (((n + off[0]) * xs[1] + c + off[1]) * xs[2] + h + off[2]) * xs[3]
                            + w
                            + off[3];
                        out.push(x[i]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive() {
        let x: Vec<f32> = (0..2 * 3 * 5 * 4).map(|i| i as f32).collect();
        let r = vec![0.0; 2 * 3 * 3 * 2];
        let mut l = layer_from_yaml("type: Crop\ncrop_param: { offset: [1, 2] }");
        let y = run_forward(&mut *l, &[(&[2, 3, 5, 4], &x), (&[2, 3, 3, 2], &r)]);
        assert_eq!(y[0].shape, vec![2, 3, 3, 2]);
        assert_eq!(
            y[0].data,
            naive(&x, [2, 3, 5, 4], [2, 3, 3, 2], [0, 0, 1, 2])
        );
        let r = vec![0.0; 2 * 2 * 2 * 2];
        let mut l = layer_from_yaml("type: Crop\ncrop_param: { axis: 1, offset: 1 }");
        let y = run_forward(&mut *l, &[(&[2, 3, 5, 4], &x), (&[2, 2, 2, 2], &r)]);
        assert_eq!(
            y[0].data,
            naive(&x, [2, 3, 5, 4], [2, 2, 2, 2], [0, 1, 1, 1])
        );
        // hand values: 1 x 1 x 3 x 3, crop the centre
        let mut l = layer_from_yaml("type: Crop\ncrop_param: { offset: 1 }");
        let x9: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let y = run_forward(&mut *l, &[(&[1, 1, 3, 3], &x9), (&[1, 1, 1, 1], &[0.0])]);
        assert_eq!(y[0].data, vec![4.0]);
        let e = err_text(Harness::new(
            "type: Crop\ncrop_param: { offset: 3 }",
            vec![Blob::new(&[1, 1, 4, 4]), Blob::new(&[1, 1, 2, 2])],
        ));
        assert!(e.contains("cannot crop axis 2"), "{e}");
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Crop\ncrop_param: { offset: [1, 0] }",
            &[&[2, 2, 4, 3], &[2, 2, 2, 2]],
        );
    }
}
