//! `Filter` and `BatchReindex` (Caffe 1.0): select items along axis 0.
//!
//! `Filter`: bottoms `x_1 .. x_K` and a selector (the last bottom, `N` values, shape `[N]` or
//! `[N, 1, ..]`); the `K` tops keep the items whose selector is nonzero, in order. Like Caffe, the
//! first reshape (at setup, before any data) keeps all `N` items. Gradients go back to the kept
//! items; the selector gets none.
//!
//! `BatchReindex`: bottoms `x` (`N` items) and `permut` (`M` indices into `0..N`); the top is
//! `[x[permut[0]], ..]`, and backward adds each top item's gradient into the item it came from.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// Copies items `rows` (of `per` values each) of `src` into consecutive items of `dst`.
fn gather(src: &[f32], rows: &[usize], per: usize, dst: &mut [f32]) {
    for (o, &r) in rows.iter().enumerate() {
        dst[o * per..(o + 1) * per].copy_from_slice(&src[r * per..(r + 1) * per]);
    }
}

/// Adds consecutive items of `src` into items `rows` of `dst`.
fn scatter_add(src: &[f32], rows: &[usize], per: usize, dst: &mut [f32]) {
    for (o, &r) in rows.iter().enumerate() {
        for (d, &s) in dst[r * per..(r + 1) * per]
            .iter_mut()
            .zip(&src[o * per..(o + 1) * per])
        {
            *d += s;
        }
    }
}

fn items(b: &Blob) -> usize {
    b.shape.first().copied().unwrap_or(1)
}

/// `Filter` layer.
pub struct Filter {
    keep: Vec<usize>,
    first_reshape: bool,
}

/// Creates `Filter` (no parameters).
pub fn create_filter(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Filter {
        keep: Vec::new(),
        first_reshape: true,
    }))
}

impl Layer for Filter {
    fn type_name(&self) -> &'static str {
        "Filter"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            min_bottom: Some(2),
            min_top: Some(1),
            ..Default::default()
        }
    }
    fn index_bound(&self, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
        (bottom + 1 == shapes.len()).then_some(2)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let sel = bottom[bottom.len() - 1];
        let n = items(sel);
        crate::ensure!(
            top.len() + 1 == bottom.len(),
            "Filter needs one top per filtered bottom: {} bottoms (the last is the selector) \
             but {} tops",
            bottom.len(),
            top.len()
        );
        crate::ensure!(
            sel.count() == n,
            "the Filter selector must hold one value per item (shape [N] or [N, 1, ...]), got {}",
            sel.shape_string()
        );
        for b in &bottom[..bottom.len() - 1] {
            crate::ensure!(
                items(b) == n,
                "every filtered bottom needs the selector's {n} items, got {}",
                b.shape_string()
            );
        }
        self.keep = if self.first_reshape {
            (0..n).collect()
        } else {
            (0..n).filter(|&i| sel.data[i] != 0.0).collect()
        };
        self.first_reshape = false;
        for (t, b) in top.iter_mut().zip(bottom) {
            let mut s = b.shape.clone();
            s[0] = self.keep.len();
            t.reshape(&s);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        for (t, b) in top.iter_mut().zip(bottom) {
            let per = b.count_from(1);
            gather(&b.data, &self.keep, per, &mut t.data);
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
        // The selector (last bottom) gets no gradient.
        for (i, t) in top.iter().enumerate() {
            if down[i] {
                let per = bottom[i].count_from(1);
                scatter_add(&t.diff, &self.keep, per, &mut bottom[i].diff);
            }
        }
        Ok(())
    }
}

/// `BatchReindex` layer.
pub struct BatchReindex {
    rows: Vec<usize>,
}

/// Creates `BatchReindex` (no parameters).
pub fn create_batch_reindex(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(BatchReindex { rows: Vec::new() }))
}

impl BatchReindex {
    fn read(&mut self, x: &Blob, permut: &Blob) -> Result<()> {
        let n = items(x);
        self.rows.clear();
        for &v in &permut.data {
            crate::ensure!(
                v.fract() == 0.0 && v >= 0.0 && (v as usize) < n,
                "BatchReindex index {v} is out of range: the data has {n} items"
            );
            self.rows.push(v as usize);
        }
        Ok(())
    }
}

impl Layer for BatchReindex {
    fn type_name(&self) -> &'static str {
        "BatchReindex"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(2, 1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
    fn index_bound(&self, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
        (bottom == 1).then(|| shapes[0].first().copied().unwrap_or(1))
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        crate::ensure!(
            bottom[1].num_axes() == 1,
            "the BatchReindex indices must be 1-D, got {}",
            bottom[1].shape_string()
        );
        let mut s = bottom[0].shape.clone();
        crate::ensure!(!s.is_empty(), "BatchReindex needs data with an item axis");
        s[0] = bottom[1].count();
        top[0].reshape(&s);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        self.read(bottom[0], bottom[1])?;
        gather(
            &bottom[0].data,
            &self.rows,
            bottom[0].count_from(1),
            &mut top[0].data,
        );
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        // The indices get no gradient.
        if down[0] {
            let per = bottom[0].count_from(1);
            scatter_add(&top[0].diff, &self.rows, per, &mut bottom[0].diff);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    #[test]
    fn filter_keeps_selected_items_and_routes_gradients() {
        let x = Blob::from_data(&[3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let y = Blob::from_data(&[3], vec![7., 8., 9.]).unwrap();
        let s = Blob::from_data(&[3, 1], vec![1., 0., 2.]).unwrap();
        let mut h = Harness::new("type: Filter\ntop: [a, b]", vec![x, y, s]).unwrap();
        assert_eq!(
            h.top[0].shape,
            vec![3, 2],
            "the first reshape keeps every item"
        );
        h.forward().unwrap();
        assert_eq!(h.top[0].data, vec![1., 2., 5., 6.]);
        assert_eq!(h.top[1].data, vec![7., 9.]);
        h.top[0].diff = vec![0.1, 0.2, 0.3, 0.4];
        h.top[1].diff = vec![1.0, 2.0];
        h.backward(&[true, true, false]).unwrap();
        assert_close(&h.bottom[0].diff, &[0.1, 0.2, 0.0, 0.0, 0.3, 0.4], 1e-7);
        assert_close(&h.bottom[1].diff, &[1.0, 0.0, 2.0], 1e-7);
        let mut c = Harness::new(
            "type: Filter\ntop: [a]",
            vec![
                Blob::new(&[4, 3]),
                Blob::from_data(&[4], vec![0., 1., 1., 0.]).unwrap(),
            ],
        )
        .unwrap();
        c.forward().unwrap();
        let r = c
            .check_gradients(&crate::testing::GradientChecker::default())
            .unwrap();
        assert!(r.ok() && r.checked == 12, "{:?}", r.failures);
        let bad = Harness::new(
            "type: Filter\ntop: [a]",
            vec![Blob::new(&[4, 3]), Blob::new(&[3])],
        );
        assert!(err_text(bad).contains("selector's 3 items"));
    }

    #[test]
    fn batch_reindex_gathers_and_sums_gradients() {
        let x = Blob::from_data(&[3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let p = Blob::from_data(&[4], vec![2., 0., 2., 1.]).unwrap();
        let mut h = Harness::new("type: BatchReindex", vec![x, p]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![4, 2]);
        assert_eq!(h.top[0].data, vec![5., 6., 1., 2., 5., 6., 3., 4.]);
        h.top[0].diff = vec![1., 1., 2., 2., 3., 3., 4., 4.];
        h.backward(&[true, false]).unwrap();
        assert_close(&h.bottom[0].diff, &[2., 2., 4., 4., 4., 4.], 1e-7);
        check_layer_from("type: BatchReindex", &[&[5, 2, 3], &[7]]);
        let x = Blob::new(&[2, 2]);
        let p = Blob::from_data(&[1], vec![2.0]).unwrap();
        let mut h = Harness::new("type: BatchReindex", vec![x, p]).unwrap();
        assert!(err_text(h.forward()).contains("out of range"));
    }
}
