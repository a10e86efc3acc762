//! `Slice`: cuts bottom 0 along `axis` (legacy `slice_dim`) at `slice_point`s, or into equal
//! parts, one per top.

use super::runs::{add_runs, copy_runs, Runs};
use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Slice` layer.
pub struct Slice {
    axis: i32,
    points: Vec<usize>,
    /// Size along the axis of each top, from the last reshape.
    sizes: Vec<usize>,
}

/// Creates `Slice` from `slice_param` (`slice_dim`, when given, wins as in Caffe).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let s = p.slice_param.clone().unwrap_or_default();
    crate::ensure!(
        !(s.axis.is_some() && s.slice_dim.is_some()),
        "slice_param: give either axis or the legacy slice_dim, not both"
    );
    let axis = match s.slice_dim {
        Some(d) => d as i32,
        None => s.axis(),
    };
    Ok(Box::new(Slice {
        axis,
        points: s.slice_point.iter().map(|&v| v as usize).collect(),
        sizes: Vec::new(),
    }))
}

impl Slice {
    /// `(outer, whole, inner)`: runs before the axis, values per run, values per axis step.
    fn geometry(&self, x: &Blob) -> Result<(usize, usize, usize)> {
        let a = x.canonical_axis(self.axis)?;
        Ok((x.count_range(0, a), x.count_from(a), x.count_from(a + 1)))
    }
}

impl Layer for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(1),
            min_top: Some(1),
            ..Default::default()
        }
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let a = bottom[0].canonical_axis(self.axis)?;
        let dim = bottom[0].shape[a];
        let n = top.len();
        self.sizes = if !self.points.is_empty() {
            crate::ensure!(
                self.points.len() == n - 1,
                "{} slice_point(s) need {} tops, got {n}",
                self.points.len(),
                self.points.len() + 1
            );
            let mut prev = 0;
            let mut sizes = Vec::new();
            for &p in &self.points {
                crate::ensure!(
                    p > prev && p < dim,
                    "slice_points must be increasing and inside (0, {dim}) for axis {a} of {}, got {:?}",
                    bottom[0].shape_string(),
                    self.points
                );
                sizes.push(p - prev);
                prev = p;
            }
            sizes.push(dim - prev);
            sizes
        } else {
            crate::ensure!(
                dim.is_multiple_of(n),
                "axis {a} of {} (size {dim}) cannot be split evenly into {n} tops",
                bottom[0].shape_string()
            );
            vec![dim / n; n]
        };
        for (t, &s) in top.iter_mut().zip(&self.sizes) {
            let mut shape = bottom[0].shape.clone();
            shape[a] = s;
            t.reshape(&shape);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (outer, whole, inner) = self.geometry(bottom[0])?;
        let mut off = 0;
        for (t, &s) in top.iter_mut().zip(&self.sizes) {
            let blk = s * inner;
            let from = Runs::at(whole, off);
            copy_runs(
                outer,
                blk,
                &bottom[0].data,
                from,
                &mut t.data,
                Runs::packed(blk),
            );
            off += blk;
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
        let (outer, whole, inner) = self.geometry(bottom[0])?;
        let mut off = 0;
        for (t, &s) in top.iter().zip(&self.sizes) {
            let blk = s * inner;
            let to = Runs::at(whole, off);
            add_runs(
                outer,
                blk,
                &t.diff,
                Runs::packed(blk),
                &mut bottom[0].diff,
                to,
            );
            off += blk;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, Harness};
    use crate::Blob;

    #[test]
    fn forward_hand_values() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut h = Harness::new(
            "type: Slice\ntop: [a, b]\nslice_param: { axis: 1, slice_point: [1] }",
            vec![Blob::from_data(&[2, 3, 2], x.clone()).unwrap()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 1, 2]);
        assert_eq!(h.top[0].data, vec![0.0, 1.0, 6.0, 7.0]);
        assert_eq!(h.top[1].shape, vec![2, 2, 2]);
        assert_eq!(
            h.top[1].data,
            vec![2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]
        );
        let mut h = Harness::new(
            "type: Slice\ntop: [a, b]\nslice_param: { slice_dim: 0 }",
            vec![Blob::from_data(&[2, 3, 2], x.clone()).unwrap()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[1].data, x[6..].to_vec());
        let e = err_text(Harness::new(
            "type: Slice\ntop: [a, b]",
            vec![Blob::new(&[2, 3])],
        ));
        assert!(e.contains("cannot be split evenly"), "{e}");
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Slice\ntop: [a, b, c]\nslice_param: { axis: 2, slice_point: [1, 3] }",
            &[&[2, 2, 4]],
        );
        check_layer_from("type: Slice\ntop: [a, b]", &[&[2, 4, 3]]);
    }
}
