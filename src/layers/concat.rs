//! `Concat`: joins the bottoms along `axis` (legacy `concat_dim`); every other axis must agree.

use super::runs::{add_runs, copy_runs, Runs};
use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Concat` layer.
pub struct Concat {
    axis: i32,
}

/// Creates `Concat` from `concat_param` (`concat_dim`, when given, wins as in Caffe).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let c = p.concat_param.unwrap_or_default();
    crate::ensure!(
        !(c.axis.is_some() && c.concat_dim.is_some()),
        "concat_param: give either axis or the legacy concat_dim, not both"
    );
    let axis = match c.concat_dim {
        Some(d) => d as i32,
        None => c.axis(),
    };
    Ok(Box::new(Concat { axis }))
}

impl Layer for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            min_bottom: Some(1),
            exact_top: Some(1),
            ..Default::default()
        }
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let a = bottom[0].canonical_axis(self.axis)?;
        let mut shape = bottom[0].shape.clone();
        for (i, b) in bottom.iter().enumerate().skip(1) {
            crate::ensure!(
                b.num_axes() == shape.len()
                    && (0..shape.len()).all(|j| j == a || b.shape[j] == shape[j]),
                "all bottoms must have the same shape except along axis {a}: bottom 0 is {}, bottom {i} is {}",
                bottom[0].shape_string(),
                b.shape_string()
            );
            shape[a] += b.shape[a];
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
        let a = bottom[0].canonical_axis(self.axis)?;
        let (outer, whole) = (bottom[0].count_range(0, a), top[0].count_from(a));
        let mut off = 0;
        for b in bottom {
            let blk = b.count_from(a);
            let to = Runs::at(whole, off);
            copy_runs(outer, blk, &b.data, Runs::packed(blk), &mut top[0].data, to);
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
        let a = bottom[0].canonical_axis(self.axis)?;
        let (outer, whole) = (bottom[0].count_range(0, a), top[0].count_from(a));
        let mut off = 0;
        for (b, &wanted) in bottom.iter_mut().zip(down) {
            let blk = b.count_from(a);
            if wanted {
                let from = Runs::at(whole, off);
                add_runs(
                    outer,
                    blk,
                    &top[0].diff,
                    from,
                    &mut b.diff,
                    Runs::packed(blk),
                );
            }
            off += blk;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_from_yaml, run_forward, Harness};
    use crate::Blob;

    #[test]
    fn forward_hand_values() {
        let mut l = layer_from_yaml("type: Concat");
        let y = run_forward(
            &mut *l,
            &[
                (&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]),
                (&[2, 2, 2], &[5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]),
            ],
        );
        assert_eq!(y[0].shape, vec![2, 3, 2]);
        assert_eq!(
            y[0].data,
            vec![1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 3.0, 4.0, 9.0, 10.0, 11.0, 12.0]
        );
        let mut l = layer_from_yaml("type: Concat\nconcat_param: { concat_dim: 0 }");
        let y = run_forward(&mut *l, &[(&[1, 2], &[1.0, 2.0]), (&[1, 2], &[3.0, 4.0])]);
        assert_eq!(y[0].shape, vec![2, 2]);
        assert_eq!(y[0].data, vec![1.0, 2.0, 3.0, 4.0]);
        let mut l = layer_from_yaml("type: Concat\nconcat_param: { axis: -1 }");
        let y = run_forward(&mut *l, &[(&[2, 1], &[1.0, 2.0]), (&[2, 1], &[3.0, 4.0])]);
        assert_eq!(y[0].data, vec![1.0, 3.0, 2.0, 4.0]);
        let e = err_text(Harness::new(
            "type: Concat",
            vec![Blob::new(&[2, 3]), Blob::new(&[3, 3])],
        ));
        assert!(e.contains("same shape except along axis 1"), "{e}");
    }

    #[test]
    fn gradients() {
        check_layer_from("type: Concat", &[&[2, 3, 2], &[2, 1, 2], &[2, 2, 2]]);
        check_layer_from(
            "type: Concat\nconcat_param: { axis: 0 }",
            &[&[1, 3], &[2, 3]],
        );
    }
}
