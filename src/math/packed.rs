//! GEMM against a right-hand matrix packed once and used many times: the recurrent layers
//! multiply every time step's states by the same weight, and BLAS would re-pack that weight on
//! every call. [`PackedB`] holds `op(B)` (`k x n`) as column panels of [`NR`] values, row after
//! row, so the kernel streams it with aligned 8-wide loads; the left matrix is read in place.
//!
//! The kernel keeps a 6 x 16 block of C in AVX2 registers (Haswell-style, FMA) when the CPU has
//! AVX2 and FMA, and falls back to plain loops over the same layout otherwise.

/// Columns per packed panel.
pub const NR: usize = 16;
/// Rows of C per kernel call.
const MR: usize = 6;
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
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); sizes asserted above.
            unsafe { avx2::gemm(self, m, a, lda, add, c, ldc) };
            return;
        }
        self.gemm_portable(m, a, lda, add, c, ldc);
    }

    /// [`Self::gemm`] as plain loops (any CPU).
    fn gemm_portable(&self, m: usize, a: &[f32], lda: usize, add: bool, c: &mut [f32], ldc: usize) {
        let k = self.k;
        for jp in 0..self.n.div_ceil(NR) {
            let (j0, panel) = (jp * NR, self.panel(jp));
            let cols = NR.min(self.n - j0);
            for i in 0..m {
                let mut acc = [0.0f32; NR];
                let arow = &a[i * lda..i * lda + k];
                for (&av, brow) in arow.iter().zip(panel.chunks_exact(NR)) {
                    acc.iter_mut().zip(brow).for_each(|(s, &b)| *s += av * b);
                }
                let crow = &mut c[i * ldc + j0..i * ldc + j0 + cols];
                for (cv, s) in crow.iter_mut().zip(acc) {
                    *cv = if add { *cv + s } else { s };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{PackedB, MR, NR};
    use std::arch::x86_64::*;

    /// See [`PackedB::gemm`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; the sizes must have been checked by the caller.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(
        pb: &PackedB,
        m: usize,
        a: &[f32],
        lda: usize,
        add: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        let n = pb.n;
        for jp in 0..n.div_ceil(NR) {
            let j0 = jp * NR;
            let cols = NR.min(n - j0);
            let panel = pb.panel(jp).as_ptr();
            let mut i = 0;
            while i < m {
                let rows = MR.min(m - i);
                let (ap, cp) = (a.as_ptr().add(i * lda), c.as_mut_ptr().add(i * ldc + j0));
                let t = Tile {
                    k: pb.k,
                    ap,
                    lda,
                    bp: panel,
                    cp,
                    ldc,
                    cols,
                    add,
                };
                match rows {
                    6 => t.run::<6>(),
                    5 => t.run::<5>(),
                    4 => t.run::<4>(),
                    3 => t.run::<3>(),
                    2 => t.run::<2>(),
                    _ => t.run::<1>(),
                }
                i += rows;
            }
        }
    }

    /// One R x NR block of C.
    struct Tile {
        k: usize,
        ap: *const f32,
        lda: usize,
        bp: *const f32,
        cp: *mut f32,
        ldc: usize,
        cols: usize,
        add: bool,
    }

    impl Tile {
        /// # Safety
        /// AVX2 and FMA; `ap` addresses R rows of `k` values (stride `lda`), `bp` a `k x NR`
        /// panel, `cp` R rows of `cols` values (stride `ldc`).
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn run<const R: usize>(&self) {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for p in 0..self.k {
                let b0 = _mm256_load_ps(self.bp.add(p * NR));
                let b1 = _mm256_load_ps(self.bp.add(p * NR + 8));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*self.ap.add(r * self.lda + p));
                    acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let cr = self.cp.add(r * self.ldc);
                if self.cols == NR {
                    let (mut c0, mut c1) = (acc[0], acc[1]);
                    if self.add {
                        c0 = _mm256_add_ps(c0, _mm256_loadu_ps(cr));
                        c1 = _mm256_add_ps(c1, _mm256_loadu_ps(cr.add(8)));
                    }
                    _mm256_storeu_ps(cr, c0);
                    _mm256_storeu_ps(cr.add(8), c1);
                } else {
                    let mut tmp = [0.0f32; NR];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), acc[1]);
                    for (j, &v) in tmp.iter().enumerate().take(self.cols) {
                        let d = cr.add(j);
                        *d = if self.add { *d + v } else { v };
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
                let mut d = vec![0.5f32; m * ldc];
                pb.gemm(m, &a, lda, false, &mut c, ldc);
                pb.gemm_portable(m, &a, lda, false, &mut d, ldc);
                for i in 0..m * ldc {
                    let w = if i % ldc < n {
                        want[i / ldc * n + i % ldc]
                    } else {
                        0.5
                    };
                    assert!((c[i] as f64 - w).abs() < 1e-4 * (1.0 + w.abs()));
                    assert!((d[i] as f64 - w).abs() < 1e-4 * (1.0 + w.abs()));
                }
            }
        }
    }
}
