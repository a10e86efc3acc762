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

impl ConvGeom {
    /// True when the sweep is a 1x1 kernel with stride 1 and no padding: the column buffer is
    /// then the image itself.
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_h == 0
            && self.pad_w == 0
    }
}

/// Fills one row `(c, ki, kj)` of a column buffer for `nb` images: `dst` holds `nb * out_h *
/// out_w` values, image after image.
fn im2col_row(imgs: &[f32], g: &ConvGeom, nb: usize, row: usize, dst: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = g.height * g.width;
    let kk = g.kernel_h * g.kernel_w;
    let (c, ki, kj) = (row / kk, (row % kk) / g.kernel_w, row % g.kernel_w);
    let off_w = (kj * g.dilation_w) as isize - g.pad_w as isize;
    // Output columns x whose input column ix = x*s + off_w lies inside the image.
    let x_lo = if off_w >= 0 {
        0
    } else {
        ((-off_w) as usize).div_ceil(g.stride_w).min(ow)
    };
    let x_hi = if (g.width as isize) <= off_w {
        x_lo
    } else {
        ((g.width as isize - off_w - 1) as usize / g.stride_w + 1).clamp(x_lo, ow)
    };
    for n in 0..nb {
        let src_plane = &imgs[(n * g.channels + c) * plane..(n * g.channels + c + 1) * plane];
        let out = &mut dst[n * oh * ow..(n + 1) * oh * ow];
        for y in 0..oh {
            let iy = (y * g.stride_h + ki * g.dilation_h) as isize - g.pad_h as isize;
            let line = &mut out[y * ow..(y + 1) * ow];
            if iy < 0 || iy >= g.height as isize {
                line.fill(0.0);
                continue;
            }
            let src = &src_plane[iy as usize * g.width..(iy as usize + 1) * g.width];
            line[..x_lo].fill(0.0);
            line[x_hi..].fill(0.0);
            let base = x_lo as isize * g.stride_w as isize + off_w;
            if g.stride_w == 1 {
                let b = base as usize;
                line[x_lo..x_hi].copy_from_slice(&src[b..b + (x_hi - x_lo)]);
            } else {
                for (i, v) in line[x_lo..x_hi].iter_mut().enumerate() {
                    *v = src[base as usize + i * g.stride_w];
                }
            }
        }
    }
}

/// Unfolds `nb` images (`nb x C x H x W`) into one column buffer of `C*kh*kw` rows and
/// `nb*out_h*out_w` columns (image `n` owns columns `n*P..(n+1)*P`), so a whole batch goes
/// through one GEMM. Rows are filled in parallel (unless called from a rayon task).
pub fn im2col_batch(imgs: &[f32], g: &ConvGeom, nb: usize, col: &mut [f32]) {
    use rayon::prelude::*;
    if g.is_pointwise() {
        // 1x1 fast path: the columns are the images, re-ordered (no unfolding).
        return batch_to_rows(imgs, nb, g.channels, g.height * g.width, col);
    }
    let cols = nb * g.col_cols();
    let rows = g.col_rows();
    let col = &mut col[..rows * cols];
    if super::nested() || rows * cols < PAR_MIN {
        for (r, dst) in col.chunks_mut(cols).enumerate() {
            im2col_row(imgs, g, nb, r, dst);
        }
    } else {
        col.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(r, dst)| im2col_row(imgs, g, nb, r, dst));
    }
}

/// Below this many elements a kernel runs on the calling thread.
const PAR_MIN: usize = 1 << 14;

/// Adds the columns of one channel (its `kh*kw` rows of a batched column buffer) back into
/// the channel's plane of image `n`.
fn col2im_plane(col: &[f32], g: &ConvGeom, nb: usize, n: usize, c: usize, plane: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let cols = nb * oh * ow;
    let kk = g.kernel_h * g.kernel_w;
    for ki in 0..g.kernel_h {
        for kj in 0..g.kernel_w {
            let row = c * kk + ki * g.kernel_w + kj;
            let src = &col[row * cols + n * oh * ow..row * cols + (n + 1) * oh * ow];
            let off_w = (kj * g.dilation_w) as isize - g.pad_w as isize;
            for y in 0..oh {
                let iy = (y * g.stride_h + ki * g.dilation_h) as isize - g.pad_h as isize;
                if iy < 0 || iy >= g.height as isize {
                    continue;
                }
                let dst = &mut plane[iy as usize * g.width..(iy as usize + 1) * g.width];
                let s = &src[y * ow..(y + 1) * ow];
                if g.stride_w == 1 && off_w >= 0 && off_w as usize + ow <= g.width {
                    let b = off_w as usize;
                    for (d, v) in dst[b..b + ow].iter_mut().zip(s) {
                        *d += v;
                    }
                } else {
                    for (x, v) in s.iter().enumerate() {
                        let ix = (x * g.stride_w) as isize + off_w;
                        if ix >= 0 && (ix as usize) < g.width {
                            dst[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_batch`]: folds a batched column buffer back into `nb` images,
/// **adding** into `imgs`. Planes are processed in parallel (unless called from a rayon task).
pub fn col2im_batch_add(col: &[f32], g: &ConvGeom, nb: usize, imgs: &mut [f32]) {
    use rayon::prelude::*;
    let plane = g.height * g.width;
    let imgs = &mut imgs[..nb * g.channels * plane];
    if plane == 0 {
        return;
    }
    if g.is_pointwise() {
        return rows_to_batch(col, nb, g.channels, plane, None, true, imgs);
    }
    let work =
        |(i, p): (usize, &mut [f32])| col2im_plane(col, g, nb, i / g.channels, i % g.channels, p);
    if super::nested() || imgs.len() * g.kernel_h * g.kernel_w < PAR_MIN {
        imgs.chunks_mut(plane).enumerate().for_each(work);
    } else {
        imgs.par_chunks_mut(plane).enumerate().for_each(work);
    }
}

/// Reorders `nb` items of `rows x p` values (`src`, item-major) into a `rows x (nb*p)` matrix
/// (`dst`, row-major): the batched layout of a GEMM output. Runs on the calling thread.
pub fn batch_to_rows(src: &[f32], nb: usize, rows: usize, p: usize, dst: &mut [f32]) {
    let dst = &mut dst[..rows * nb * p];
    for (r, d) in dst.chunks_mut((nb * p).max(1)).enumerate() {
        for n in 0..nb {
            d[n * p..(n + 1) * p].copy_from_slice(&src[(n * rows + r) * p..(n * rows + r + 1) * p]);
        }
    }
}

/// The inverse of [`batch_to_rows`]: `dst[n][r][:] (+)= src[r][n*p..]` (plus `bias[r]` when
/// given); `add` chooses between adding and overwriting. Runs on the calling thread.
pub fn rows_to_batch(
    src: &[f32],
    nb: usize,
    rows: usize,
    p: usize,
    bias: Option<&[f32]>,
    add: bool,
    dst: &mut [f32],
) {
    let dst = &mut dst[..nb * rows * p];
    for (n, d) in dst.chunks_mut((rows * p).max(1)).enumerate() {
        for r in 0..rows {
            let s = &src[r * nb * p + n * p..r * nb * p + (n + 1) * p];
            let o = &mut d[r * p..(r + 1) * p];
            let b = bias.map_or(0.0, |b| b[r]);
            if add {
                o.iter_mut().zip(s).for_each(|(o, s)| *o += s + b);
            } else {
                o.iter_mut().zip(s).for_each(|(o, s)| *o = s + b);
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

    #[test]
    fn batched_kernels_match_per_image() {
        for (k, s, p, d) in [(3, 2, 1, 1), (1, 1, 0, 1), (2, 1, 2, 2), (3, 3, 0, 1)] {
            let g = ConvGeom {
                channels: 3,
                height: 7,
                width: 6,
                kernel_h: k,
                kernel_w: k,
                pad_h: p,
                pad_w: p,
                stride_h: s,
                stride_w: s,
                dilation_h: d,
                dilation_w: d,
            };
            let nb = 3;
            let per = g.channels * g.height * g.width;
            let x: Vec<f32> = (0..nb * per).map(|i| (i as f32 * 0.37).sin()).collect();
            let (rows, pp) = (g.col_rows(), g.col_cols());
            let mut big = vec![f32::NAN; rows * nb * pp];
            im2col_batch(&x, &g, nb, &mut big);
            for n in 0..nb {
                let mut one = vec![0.0; rows * pp];
                im2col(&x[n * per..(n + 1) * per], &g, &mut one);
                for r in 0..rows {
                    assert_eq!(
                        &big[r * nb * pp + n * pp..r * nb * pp + (n + 1) * pp],
                        &one[r * pp..(r + 1) * pp]
                    );
                }
            }
            let c: Vec<f32> = (0..rows * nb * pp)
                .map(|i| (i as f32 * 0.13).cos())
                .collect();
            let mut a = vec![1.0; nb * per];
            col2im_batch_add(&c, &g, nb, &mut a);
            let mut rows_c = vec![0.0; nb * per];
            // per image: gather that image's columns
            for n in 0..nb {
                let mut one = vec![0.0; rows * pp];
                for r in 0..rows {
                    one[r * pp..(r + 1) * pp]
                        .copy_from_slice(&c[r * nb * pp + n * pp..r * nb * pp + (n + 1) * pp]);
                }
                let mut e = vec![1.0; per];
                col2im_add(&one, &g, &mut e);
                for (u, v) in a[n * per..(n + 1) * per].iter().zip(&e) {
                    assert!((u - v).abs() < 1e-5);
                }
            }
            batch_to_rows(&x, nb, g.channels, g.height * g.width, &mut rows_c);
            let mut back = vec![0.0; nb * per];
            rows_to_batch(
                &rows_c,
                nb,
                g.channels,
                g.height * g.width,
                None,
                false,
                &mut back,
            );
            assert_eq!(back, x);
        }
    }
}
