//! im2col / col2im for 2-D convolution (Caffe's layout: rows = C*kh*kw, columns = out_h*out_w).

/// Geometry of one 2-D convolution window sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
}

impl ConvGeom {
    /// Output height: `(h + 2p - (d*(k-1)+1)) / s + 1`.
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.pad_h).saturating_sub(self.dilation_h * (self.kernel_h - 1) + 1)
            / self.stride_h
            + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.pad_w).saturating_sub(self.dilation_w * (self.kernel_w - 1) + 1)
            / self.stride_w
            + 1
    }

    /// Rows of the column buffer (`C * kh * kw`).
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }

    /// Columns of the column buffer (`out_h * out_w`).
    pub fn col_cols(&self) -> usize {
        self.out_h() * self.out_w()
    }
}

/// Unfolds one image (`C x H x W`) into `col` (`C*kh*kw x out_h*out_w`).
pub fn im2col(img: &[f32], g: &ConvGeom, col: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &img[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let dst = &mut col[row * oh * ow..(row + 1) * oh * ow];
                for y in 0..oh {
                    let iy = (y * g.stride_h + ki * g.dilation_h) as isize - g.pad_h as isize;
                    let line = &mut dst[y * ow..(y + 1) * ow];
                    if iy < 0 || iy >= g.height as isize {
                        line.iter_mut().for_each(|v| *v = 0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.width..(iy as usize + 1) * g.width];
                    for (x, v) in line.iter_mut().enumerate() {
                        let ix = (x * g.stride_w + kj * g.dilation_w) as isize - g.pad_w as isize;
                        *v = if ix >= 0 && (ix as usize) < g.width {
                            src[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
                row += 1;
            }
        }
    }
}

/// Folds `col` back into an image, **adding** overlapping contributions into `img`.
pub fn col2im_add(col: &[f32], g: &ConvGeom, img: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &mut img[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let src = &col[row * oh * ow..(row + 1) * oh * ow];
                for y in 0..oh {
                    let iy = (y * g.stride_h + ki * g.dilation_h) as isize - g.pad_h as isize;
                    if iy < 0 || iy >= g.height as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.width..(iy as usize + 1) * g.width];
                    for x in 0..ow {
                        let ix = (x * g.stride_w + kj * g.dilation_w) as isize - g.pad_w as isize;
                        if ix >= 0 && (ix as usize) < g.width {
                            dst[ix as usize] += src[y * ow + x];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn im2col_col2im_adjoint() {
        // <im2col(x), c> == <x, col2im(c)> for any x, c: the two are adjoint.
        let g = ConvGeom {
            channels: 2,
            height: 5,
            width: 4,
            kernel_h: 3,
            kernel_w: 2,
            pad_h: 1,
            pad_w: 1,
            stride_h: 2,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 2,
        };
        let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.3).sin()).collect();
        let n = g.col_rows() * g.col_cols();
        let c: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut col = vec![0.0; n];
        im2col(&x, &g, &mut col);
        let mut img = vec![0.0; 40];
        col2im_add(&c, &g, &mut img);
        let lhs: f32 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&img).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
        assert_eq!((g.out_h(), g.out_w()), (3, 4));
    }
}
