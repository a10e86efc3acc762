//! GEMM against a right-hand matrix packed once and used many times: the recurrent layers
//! multiply every time step's states by the same weight, and BLAS would re-pack that weight on
//! every call. [`PackedB`] holds `op(B)` (`k x n`) as column panels of [`NR`] values, row after
//! row, 64-byte aligned; the left matrix is read in place. The register tile is the direct
//! convolution's ([`conv_gemm::rows_times_panel`]: AVX-512, AVX2 + FMA or plain loops, as the
//! CPU allows).

use super::conv_gemm::{self, MR, NR, TILE};

/// Values per 64-byte cache line.
const LINE: usize = 16;

/// `op(B)` packed into column panels (see the module doc).
#[derive(Default)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// Panels start at `off` (a 64-byte boundary); panel `j` holds columns `j*NR..` as `k` rows
    /// of `NR` values, zero past column `n`.
    buf: Vec<f32>,
    off: usize,
}

impl PackedB {
    /// Rows of `op(B)`.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns of `op(B)`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Packs `op(B)`, a `k x n` matrix: `b` is row-major `k x n`, or `n x k` when `trans`
    /// (then `op(B) = B^T`). Reuses the buffer: no allocation once it has been this size.
    pub fn pack(&mut self, trans: bool, k: usize, n: usize, b: &[f32]) {
        assert!(
            b.len() >= k * n,
            "pack: B holds {} values, needs {k}x{n}",
            b.len()
        );
        let panels = n.div_ceil(NR);
        let need = panels * k * NR + LINE;
        if self.buf.len() < need {
            self.buf.resize(need, 0.0);
        }
        let addr = self.buf.as_ptr() as usize;
        self.off = (addr.next_multiple_of(64) - addr) / 4;
        self.k = k;
        self.n = n;
        let data = &mut self.buf[self.off..self.off + panels * k * NR];
        for (jp, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let j0 = jp * NR;
            let cols = NR.min(n - j0);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if j >= cols {
                        0.0
                    } else if trans {
                        b[(j0 + j) * k + p]
                    } else {
                        b[p * n + j0 + j]
                    };
                }
            }
        }
    }

    fn panel(&self, jp: usize) -> &[f32] {
        let len = self.k * NR;
        &self.buf[self.off + jp * len..self.off + (jp + 1) * len]
    }

    /// `C = A op(B)`, or `C += A op(B)` when `add`: `A` is `m x k` with row stride `lda`, `C` is
    /// `m x n` with row stride `ldc` (both row-major).
    pub fn gemm(&self, m: usize, a: &[f32], lda: usize, add: bool, c: &mut [f32], ldc: usize) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            lda >= k && a.len() >= (m - 1) * lda + k,
            "packed gemm: A too short"
        );
        assert!(
            ldc >= n && c.len() >= (m - 1) * ldc + n,
            "packed gemm: C too short"
        );
        let mut acc = [0.0f32; TILE];
        for jp in 0..n.div_ceil(NR) {
            let (j0, panel) = (jp * NR, self.panel(jp));
            let cols = NR.min(n - j0);
            for i in (0..m).step_by(MR) {
                let rows = MR.min(m - i);
                conv_gemm::rows_times_panel(rows, k, &a[i * lda..], lda, panel, &mut acc);
                for (r, v) in acc.chunks_exact(NR).take(rows).enumerate() {
                    let crow = &mut c[(i + r) * ldc + j0..][..cols];
                    if add {
                        crow.iter_mut().zip(v).for_each(|(c, v)| *c += v);
                    } else {
                        crow.copy_from_slice(&v[..cols]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], tb: bool) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += a[i * lda + p] as f64 * bv as f64;
                }
            }
        }
        c
    }

    #[test]
    fn matches_naive_for_edge_sizes_and_strides() {
        let mut pb = PackedB::default();
        for (m, n, k) in [
            (1, 1, 1),
            (7, 17, 5),
            (13, 33, 40),
            (16, 64, 9),
            (6, 16, 300),
        ] {
            let lda = k + 3;
            let a: Vec<f32> = (0..m * lda).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            for tb in [false, true] {
                pb.pack(tb, k, n, &b);
                assert_eq!((pb.k(), pb.n()), (k, n));
                let want = naive(m, n, k, &a, lda, &b, tb);
                let ldc = n + 2;
                let mut c = vec![0.5f32; m * ldc];
                pb.gemm(m, &a, lda, true, &mut c, ldc);
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j] as f64;
                        let w = if j < n { want[i * n + j] + 0.5 } else { 0.5 };
                        assert!((got - w).abs() < 1e-4 * (1.0 + w.abs()), "{m}x{n}x{k} {tb}");
                    }
                }
                pb.gemm(m, &a, lda, false, &mut c, ldc);
                for i in 0..m * ldc {
                    let w = if i % ldc < n {
                        want[i / ldc * n + i % ldc]
                    } else {
                        0.5
                    };
                    assert!((c[i] as f64 - w).abs() < 1e-4 * (1.0 + w.abs()));
                }
            }
        }
    }
}
