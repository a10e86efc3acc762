//! im2col / col2im over any number of spatial axes (Caffe's `im2col_nd_cpu`): rows are
//! `C * k_0 * ... * k_{n-1}` (channel slowest, last kernel axis fastest), columns are the output
//! positions `o_0 * ... * o_{n-1}` in row-major order. Used by Convolution and Deconvolution
//! when the blob does not have exactly 2 spatial axes (the 2-D path is [`super::im2col`]).

/// Geometry of one N-D window sweep over an image of `channels x shape[0] x ... x shape[n-1]`.
/// Every per-axis list has one value per spatial axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdGeom {
    pub channels: usize,
    pub shape: Vec<usize>,
    pub kernel: Vec<usize>,
    pub pad: Vec<usize>,
    pub stride: Vec<usize>,
    pub dilation: Vec<usize>,
}

impl NdGeom {
    /// Output size along every spatial axis: `(in + 2p - (d*(k-1)+1)) / s + 1`.
    pub fn out_shape(&self) -> Vec<usize> {
        (0..self.shape.len())
            .map(|i| {
                let ext = self.dilation[i] * (self.kernel[i] - 1) + 1;
                (self.shape[i] + 2 * self.pad[i]).saturating_sub(ext) / self.stride[i] + 1
            })
            .collect()
    }

    /// Values in one image (`C * prod(shape)`).
    pub fn image_len(&self) -> usize {
        self.channels * self.shape.iter().product::<usize>()
    }

    /// Rows of the column buffer (`C * prod(kernel)`).
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel.iter().product::<usize>()
    }

    /// Columns of the column buffer (`prod(out_shape)`).
    pub fn col_cols(&self) -> usize {
        self.out_shape().iter().product()
    }

    /// Calls `f(row, first column, line, last kernel index)` for every run of the last output
    /// axis of every row: `line` is the image offset where the input line starts (channel and
    /// every axis but the last fixed), or `None` where an outer axis reads padding.
    fn lines(&self, mut f: impl FnMut(usize, usize, Option<usize>, usize)) {
        let n = self.shape.len();
        let out = self.out_shape();
        let last = n - 1;
        let kvol: usize = self.kernel.iter().product();
        let outer: usize = out[..last].iter().product();
        let plane: usize = self.shape.iter().product();
        let mut k_idx = vec![0usize; n];
        let mut o_idx = vec![0usize; last];
        for row in 0..self.channels * kvol {
            let c = row / kvol;
            let mut r = row % kvol;
            for i in (0..n).rev() {
                k_idx[i] = r % self.kernel[i];
                r /= self.kernel[i];
            }
            o_idx.iter_mut().for_each(|v| *v = 0);
            for run in 0..outer {
                let mut at = Some(0usize);
                for i in 0..last {
                    let p = (o_idx[i] * self.stride[i] + k_idx[i] * self.dilation[i]) as isize
                        - self.pad[i] as isize;
                    at = match at {
                        Some(a) if p >= 0 && (p as usize) < self.shape[i] => {
                            Some(a * self.shape[i] + p as usize)
                        }
                        _ => None,
                    };
                }
                let line = at.map(|a| c * plane + a * self.shape[last]);
                f(row, run * out[last], line, k_idx[last]);
                // Next outer position, axis `last - 1` fastest.
                for i in (0..last).rev() {
                    o_idx[i] += 1;
                    if o_idx[i] < out[i] {
                        break;
                    }
                    o_idx[i] = 0;
                }
            }
        }
    }

    /// Input position along the last axis of output `x` with last kernel index `k`, if inside.
    fn last_pos(&self, x: usize, k: usize) -> Option<usize> {
        let a = self.shape.len() - 1;
        let p = (x * self.stride[a] + k * self.dilation[a]) as isize - self.pad[a] as isize;
        (p >= 0 && (p as usize) < self.shape[a]).then_some(p as usize)
    }
}

/// Unfolds one image into `col` (`col_rows x col_cols`); padding reads as 0.
pub fn im2col_nd(img: &[f32], g: &NdGeom, col: &mut [f32]) {
    let (cols, ol) = (g.col_cols(), g.out_shape().last().copied().unwrap_or(1));
    g.lines(|row, c0, line, k| {
        let dst = &mut col[row * cols + c0..row * cols + c0 + ol];
        match line {
            None => dst.fill(0.0),
            Some(b) => {
                for (x, v) in dst.iter_mut().enumerate() {
                    *v = g.last_pos(x, k).map_or(0.0, |p| img[b + p]);
                }
            }
        }
    });
}

/// Folds `col` back into an image, **adding** overlapping contributions into `img`.
pub fn col2im_nd_add(col: &[f32], g: &NdGeom, img: &mut [f32]) {
    let (cols, ol) = (g.col_cols(), g.out_shape().last().copied().unwrap_or(1));
    g.lines(|row, c0, line, k| {
        let Some(b) = line else { return };
        let src = &col[row * cols + c0..row * cols + c0 + ol];
        for (x, v) in src.iter().enumerate() {
            if let Some(p) = g.last_pos(x, k) {
                img[b + p] += v;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::im2col::{im2col, ConvGeom};

    #[test]
    fn two_axes_match_the_2d_im2col() {
        let g = NdGeom {
            channels: 2,
            shape: vec![5, 6],
            kernel: vec![3, 2],
            pad: vec![1, 2],
            stride: vec![2, 1],
            dilation: vec![1, 2],
        };
        let g2 = ConvGeom {
            channels: 2,
            height: 5,
            width: 6,
            kernel_h: 3,
            kernel_w: 2,
            pad_h: 1,
            pad_w: 2,
            stride_h: 2,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 2,
        };
        assert_eq!(g.out_shape(), vec![g2.out_h(), g2.out_w()]);
        let img: Vec<f32> = (0..60).map(|v| v as f32).collect();
        let (mut a, mut b) = (
            vec![9.0; g.col_rows() * g.col_cols()],
            vec![9.0; g.col_rows() * g.col_cols()],
        );
        im2col_nd(&img, &g, &mut a);
        im2col(&img, &g2, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn one_axis_unfolds_windows() {
        // 1 channel of length 4 (values 1..=4), kernel 2, pad 1, stride 2: windows over
        // [0 1 2 3 4 0] at 0, 2, 4 -> rows (first tap, second tap).
        let g = NdGeom {
            channels: 1,
            shape: vec![4],
            kernel: vec![2],
            pad: vec![1],
            stride: vec![2],
            dilation: vec![1],
        };
        let mut col = vec![0.0; 6];
        im2col_nd(&[1., 2., 3., 4.], &g, &mut col);
        assert_eq!(col, vec![0., 2., 4., 1., 3., 0.]);
        // col2im adds every tap back: each input value is read once here.
        let mut img = vec![0.0; 4];
        col2im_nd_add(&col, &g, &mut img);
        assert_eq!(img, vec![1., 2., 3., 4.]);
    }
}
