//! `Im2col`: exposes the im2col unfolding as a layer. Top is `N x (C*kh*kw) x out_h x out_w`
//! (`convolution_param` gives kernel, stride, pad, dilation); backward folds with col2im.

use super::base_conv::ConvSpec;
use super::{BlobCounts, Layer};
use crate::math::im2col::{col2im_add, im2col, ConvGeom};
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use rayon::prelude::*;

/// `Im2col` layer.
pub struct Im2col {
    spec: ConvSpec,
    geom: Option<ConvGeom>,
}

/// Creates `Im2col` from `convolution_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let cp = p.convolution_param.clone().unwrap_or_default();
    Ok(Box::new(Im2col {
        spec: ConvSpec::parse(&cp, false)?,
        geom: None,
    }))
}

impl Layer for Im2col {
    fn type_name(&self) -> &'static str {
        "Im2col"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (axis, _, c, h, w) = self.spec.split_shape(bottom[0])?;
        self.spec = self.spec.for_axes(2)?;
        self.spec.check_fits(&[h, w])?;
        let g = self.spec.geom(c, h, w);
        let mut shape = bottom[0].shape[..axis].to_vec();
        shape.extend([g.col_rows(), g.out_h(), g.out_w()]);
        top[0].reshape(&shape);
        self.geom = Some(g);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let Some(g) = self.geom else {
            crate::bail!("Im2col forward before reshape");
        };
        let (il, ol) = (g.channels * g.height * g.width, g.col_rows() * g.col_cols());
        let x = &bottom[0].data;
        if il == 0 || ol == 0 {
            return Ok(());
        }
        top[0]
            .data
            .par_chunks_mut(ol)
            .enumerate()
            .for_each(|(i, col)| im2col(&x[i * il..(i + 1) * il], &g, col));
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let Some(g) = self.geom else {
            crate::bail!("Im2col backward before reshape");
        };
        if !down[0] {
            return Ok(());
        }
        let (il, ol) = (g.channels * g.height * g.width, g.col_rows() * g.col_cols());
        let dy = &top[0].diff;
        if il == 0 || ol == 0 {
            return Ok(());
        }
        bottom[0]
            .diff
            .par_chunks_mut(il)
            .enumerate()
            .for_each(|(i, dx)| col2im_add(&dy[i * ol..(i + 1) * ol], &g, dx));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, Harness};
    use crate::Blob;

    #[test]
    fn unfolds_windows_like_caffe() {
        // 1x1x3x3 image 0..9, kernel 2, stride 1: 4 rows (window offsets) x 4 positions.
        let x = Blob::from_data(&[1, 1, 3, 3], (0..9).map(|v| v as f32).collect()).unwrap();
        let mut h = Harness::new(
            "type: Im2col\nconvolution_param: { kernel_size: 2 }",
            vec![x],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![1, 4, 2, 2]);
        assert_eq!(
            h.top[0].data,
            vec![0., 1., 3., 4., 1., 2., 4., 5., 3., 4., 6., 7., 4., 5., 7., 8.]
        );
        let h = Harness::new(
            "type: Im2col\nconvolution_param: { kernel_size: 3, stride: 2, pad: 1, dilation: 2 }",
            vec![Blob::new(&[2, 3, 7, 6])],
        )
        .unwrap();
        assert_eq!(h.top[0].shape, vec![2, 27, 3, 2]);
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Im2col\nconvolution_param: { kernel_h: 2, kernel_w: 3, stride: 2, pad: 1 }",
            &[&[2, 2, 4, 5]],
        );
    }
}
