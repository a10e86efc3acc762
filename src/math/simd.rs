//! Run-time CPU dispatch: kernels written as plain loops are compiled a second time with AVX2
//! and FMA enabled, and that copy runs when the CPU has them (the baseline copy otherwise).

/// Compiles `$body` (an `#[inline(always)]` function) a second time with AVX2 and FMA enabled
/// and calls that copy when the CPU supports them.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),*) => $body:ident) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($a: $t),*) {
                    $body($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { fast($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($a:ident: $t:ty),*) => $body:ident) => {
        $(#[$m])*
        ///
        /// # Safety
        /// As for the body it dispatches to.
        $vis unsafe fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($a: $t),*) {
                    // SAFETY: forwarded from the caller of the outer function.
                    unsafe { $body($($a),*) }
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above); the rest is
                    // the caller's contract.
                    return unsafe { fast($($a),*) };
                }
            }
            // SAFETY: the caller's contract.
            unsafe { $body($($a),*) }
        }
    };
}
pub(crate) use multiversion;
