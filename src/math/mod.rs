//! All heavy math: one sgemm/sgemv wrapper over cblas (OpenBLAS) and small vector kernels.

pub mod activations;
pub mod conv_gemm;
pub mod im2col;
pub mod im2col_nd;
pub mod packed;
pub mod scratch;
pub mod simd;
pub mod winograd;

use cblas::{Layout, Transpose};

fn tr(t: bool) -> Transpose {
    if t {
        Transpose::Ordinary
    } else {
        Transpose::None
    }
}

/// OpenBLAS runs single-threaded: the parallelism of a large GEMM comes from rayon (see
/// [`gemm`]), so OpenBLAS's own spinning workers never fight rayon's threads for the cores.
fn single_threaded_blas() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" {
        fn openblas_set_num_threads(n: std::os::raw::c_int);
    }
    // SAFETY: a plain setter of OpenBLAS's global thread count, called once.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// A process-wide on/off switch for an alternative kernel, on unless its environment
/// variable is `1` (read on first use), and settable (benchmarks compare the two routes).
pub struct Switch {
    /// 0: not yet read from the environment, 1: on, 2: off.
    state: std::sync::atomic::AtomicU8,
    var: &'static str,
}

impl Switch {
    /// A switch turned off by `var=1`.
    pub const fn new(var: &'static str) -> Switch {
        Switch {
            state: std::sync::atomic::AtomicU8::new(0),
            var,
        }
    }

    /// Whether the kernel may run.
    pub fn on(&self) -> bool {
        use std::sync::atomic::Ordering;
        match self.state.load(Ordering::Relaxed) {
            0 => {
                let off = std::env::var_os(self.var).is_some_and(|v| v == "1");
                self.set(!off);
                !off
            }
            v => v == 1,
        }
    }

    /// Turns the kernel on or off for the whole process.
    pub fn set(&self, on: bool) {
        let v = if on { 1 } else { 2 };
        self.state.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

/// True on one of rayon's threads: the caller is already one parallel task among others, so
/// the kernels below run on it alone instead of splitting again.
pub fn nested() -> bool {
    rayon::current_thread_index().is_some()
}

/// Below this many multiply-adds a GEMM runs on the calling thread.
const PAR_GEMM_MIN: usize = 1 << 20;

#[derive(Clone, Copy)]
struct Ptr(*mut f32);
// SAFETY: every task writes a disjoint block of C (see `gemm`).
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

/// Raw row-major sgemm on (sub-)matrices with explicit leading dimensions.
///
/// # Safety
/// The pointers must address matrices of the given sizes and strides; the C block must not be
/// written by anyone else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_raw(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    let t = |x: bool| {
        if x {
            cblas_sys::CBLAS_TRANSPOSE::CblasTrans
        } else {
            cblas_sys::CBLAS_TRANSPOSE::CblasNoTrans
        }
    };
    cblas_sys::cblas_sgemm(
        cblas_sys::CBLAS_LAYOUT::CblasRowMajor,
        t(ta),
        t(tb),
        m as i32,
        n as i32,
        k as i32,
        alpha,
        a,
        lda as i32,
        b,
        ldb as i32,
        beta,
        c,
        ldc as i32,
    );
}

/// `C = alpha * op(A) * op(B) + beta * C`, row-major, `op(A)` is `m x k`, `op(B)` is `k x n`.
/// Caffe's `caffe_cpu_gemm`. Large products are split into column (or row) blocks of C that
/// rayon's threads compute with single-threaded OpenBLAS calls; a call made from one of
/// rayon's threads (a task that already has its core) runs on that thread alone.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    use rayon::prelude::*;
    assert!(
        a.len() >= m * k,
        "gemm: A holds {} values, needs {m}x{k}",
        a.len()
    );
    assert!(
        b.len() >= k * n,
        "gemm: B holds {} values, needs {k}x{n}",
        b.len()
    );
    assert!(
        c.len() >= m * n,
        "gemm: C holds {} values, needs {m}x{n}",
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scal(beta, &mut c[..m * n]);
        return;
    }
    single_threaded_blas();
    let lda = if trans_a { m } else { k };
    let ldb = if trans_b { k } else { n };
    let threads = rayon::current_num_threads();
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), Ptr(c.as_mut_ptr()));
    if nested() || threads < 2 || m * n * k < PAR_GEMM_MIN {
        // SAFETY: the slices hold the m*k, k*n and m*n elements (asserted above).
        unsafe {
            sgemm_raw(
                trans_a, trans_b, m, n, k, alpha, ap, lda, bp, ldb, beta, cp.0, n,
            )
        };
        return;
    }
    let (ap, bp) = (Ptr(ap as *mut f32), Ptr(bp as *mut f32));
    let split_n = n >= m;
    let dim = if split_n { n } else { m };
    let step = dim.div_ceil(threads).next_multiple_of(16).min(dim);
    let parts = dim.div_ceil(step);
    (0..parts).into_par_iter().for_each(|i| {
        let (s, e) = (i * step, ((i + 1) * step).min(dim));
        let (ap, bp, cp) = (ap, bp, cp);
        // SAFETY: block i covers C columns (or rows) s..e only, disjoint from every other
        // block; A and B are only read; offsets stay inside the asserted sizes.
        unsafe {
            if split_n {
                let b0 = if trans_b {
                    bp.0.add(s * k)
                } else {
                    bp.0.add(s)
                };
                sgemm_raw(
                    trans_a,
                    trans_b,
                    m,
                    e - s,
                    k,
                    alpha,
                    ap.0,
                    lda,
                    b0,
                    ldb,
                    beta,
                    cp.0.add(s),
                    n,
                );
            } else {
                let a0 = if trans_a {
                    ap.0.add(s)
                } else {
                    ap.0.add(s * k)
                };
                sgemm_raw(
                    trans_a,
                    trans_b,
                    e - s,
                    n,
                    k,
                    alpha,
                    a0,
                    lda,
                    bp.0,
                    ldb,
                    beta,
                    cp.0.add(s * n),
                    n,
                );
            }
        }
    });
}

/// `y = alpha * op(A) * x + beta * y` with `A` an `m x n` row-major matrix. Caffe's `caffe_cpu_gemv`.
#[allow(clippy::too_many_arguments)]
pub fn gemv(
    trans_a: bool,
    m: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    x: &[f32],
    beta: f32,
    y: &mut [f32],
) {
    let (xl, yl) = if trans_a { (m, n) } else { (n, m) };
    assert!(
        a.len() >= m * n,
        "gemv: A holds {} values, needs {m}x{n}",
        a.len()
    );
    assert!(
        x.len() >= xl,
        "gemv: x holds {} values, needs {xl}",
        x.len()
    );
    assert!(
        y.len() >= yl,
        "gemv: y holds {} values, needs {yl}",
        y.len()
    );
    if m == 0 || n == 0 {
        scal(beta, &mut y[..yl]);
        return;
    }
    // SAFETY: A holds m*n values; x and y hold the lengths op(A) needs (asserted above).
    unsafe {
        cblas::sgemv(
            Layout::RowMajor,
            tr(trans_a),
            m as i32,
            n as i32,
            alpha,
            a,
            n as i32,
            x,
            1,
            beta,
            y,
            1,
        );
    }
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `y = alpha * x + beta * y`.
pub fn axpby(alpha: f32, x: &[f32], beta: f32, y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = alpha * xi + beta * *yi;
    }
}

/// `x *= alpha` (sets to zero when alpha is 0, so NaNs do not survive).
pub fn scal(alpha: f32, x: &mut [f32]) {
    if alpha == 0.0 {
        x.iter_mut().for_each(|v| *v = 0.0);
    } else {
        x.iter_mut().for_each(|v| *v *= alpha);
    }
}

/// Dot product.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Sum of absolute values.
pub fn asum(x: &[f32]) -> f32 {
    x.iter().map(|v| v.abs()).sum()
}

/// Sum of squares.
pub fn sumsq(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_for_all_transposes() {
        let (m, n, k) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let mut c = vec![1.0; m * n];
                gemm(ta, tb, m, n, k, 2.0, &a, &b, 0.5, &mut c);
                let r = naive(ta, tb, m, n, k, &a, &b);
                for (x, y) in c.iter().zip(&r) {
                    assert!((x - (2.0 * y + 0.5)).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn parallel_gemm_blocks_match_naive() {
        for (m, n, k) in [(40, 300, 120), (300, 40, 120)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            for ta in [false, true] {
                for tb in [false, true] {
                    let mut c = vec![1.0; m * n];
                    gemm(ta, tb, m, n, k, 1.5, &a, &b, 0.5, &mut c);
                    let r = naive(ta, tb, m, n, k, &a, &b);
                    for (x, y) in c.iter().zip(&r) {
                        assert!((x - (1.5 * y + 0.5)).abs() < 1e-3, "{x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn gemv_matches_hand_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
        let mut y = [1.0, 1.0];
        gemv(false, 2, 3, 1.0, &a, &[1.0, 0.0, -1.0], 1.0, &mut y);
        assert_eq!(y, [-1.0, -1.0]);
        let mut z = [0.0; 3];
        gemv(true, 2, 3, 1.0, &a, &[1.0, 1.0], 0.0, &mut z);
        assert_eq!(z, [5.0, 7.0, 9.0]);
    }

    /// The safe wrappers refuse short slices in release builds too (no out-of-bounds BLAS read).
    #[test]
    fn blas_wrappers_check_lengths() {
        use std::panic::catch_unwind;
        let a = [1.0f32; 6];
        assert!(
            catch_unwind(|| gemv(false, 2, 3, 1.0, &a, &[1.0; 2], 0.0, &mut [0.0; 2])).is_err()
        );
        assert!(catch_unwind(|| gemv(true, 2, 3, 1.0, &a, &[1.0; 2], 0.0, &mut [0.0; 2])).is_err());
        assert!(
            catch_unwind(|| gemv(false, 3, 3, 1.0, &a, &[1.0; 3], 0.0, &mut [0.0; 3])).is_err()
        );
        assert!(catch_unwind(|| {
            gemm(false, false, 2, 2, 3, 1.0, &a, &a[..5], 0.0, &mut [0.0; 4])
        })
        .is_err());
        let mut y = [0.0; 2];
        gemv(false, 2, 3, 1.0, &a, &[1.0; 3], 0.0, &mut y);
        assert_eq!(y, [3.0, 3.0]);
    }
}
