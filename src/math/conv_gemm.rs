//! 2-D convolution GEMMs that never build a column buffer.
//!
//! The im2col route writes the whole `K x P` column matrix, then BLAS copies it again into its
//! own panels, zeroes C for `beta = 0` and re-packs the weights on every call; at the small
//! images of CIFAR-sized nets that traffic costs as much as the multiply-adds. Here the column
//! values go straight from the image into a [`NR`]-wide panel (`kc x NR`, L1-resident) and an
//! `MR x NR` register kernel (AVX-512 or AVX2 + FMA as the CPU has them, plain loops otherwise) reads the
//! weights in place. Three products are built on it:
//! - [`forward`]: `y (+)= W * im2col(x) (+ bias)`, on one of three routes ([`Route`]): output
//!   pixels of a row across the tile read in place (stride 1), the same gathered into packed
//!   panels, or output channels across the tile and up to 14 pixels of a row down it (any
//!   stride: a pixel is a broadcast, so stride 4 costs nothing), whichever fills the tile best;
//! - [`backward_data`]: `dx += col2im(W^T dy)`, computed for stride 1 as the forward
//!   convolution of `dy` with the flipped, transposed kernel (no scatter-add);
//! - [`backward_weights`]: `dW += dy * im2col(x)^T`, as `dW^T = im2col(x) * dy^T` with the
//!   column rows filled `MR` at a time and `dy^T` packed once per block of positions.
//!
//! The functions work on one thread; the caller spreads the batch over threads.

use super::im2col::ConvGeom;
use super::scratch::{with_buffer, Scratch};
use std::cell::Cell;

static SWITCH: super::Switch = super::Switch::new("CREMA_NO_DIRECT_CONV");

/// Whether 2-D convolutions may run here rather than by im2col + BLAS (off when
/// `CREMA_NO_DIRECT_CONV=1`, or by [`set_enabled`]).
pub fn enabled() -> bool {
    SWITCH.on()
}

/// Turns these kernels on or off for the whole process (benchmarks compare the two routes).
pub fn set_enabled(on: bool) {
    SWITCH.set(on)
}

/// Rows of C per register tile.
pub(crate) const MR: usize = 6;
/// Columns of C per register tile (two AVX vectors).
pub(crate) const NR: usize = 16;
/// Values in one register tile's accumulator.
pub(crate) const TILE: usize = MR * NR;
/// Reduction length per packed panel (a `KC x NR` panel is 16 KiB).
const KC: usize = 256;
/// Columns packed per block of the forward product (`NC / NR` panels, `KC x NC` in L2).
const NC: usize = 256;
/// Positions per block of the weight gradient.
const QC: usize = 768;

thread_local! {
    static PANEL: Scratch<f32> = const { Cell::new(Vec::new()) };
    static ROWS: Scratch<f32> = const { Cell::new(Vec::new()) };
    static ACC: Scratch<f32> = const { Cell::new(Vec::new()) };
    static PADDED: Scratch<f32> = const { Cell::new(Vec::new()) };
    static PACKED_W: Scratch<f32> = const { Cell::new(Vec::new()) };
    static RUNS: Scratch<Run> = const { Cell::new(Vec::new()) };
    static SPANS: Scratch<Span> = const { Cell::new(Vec::new()) };
}

/// Columns `q..` of the (batched) column matrix that lie in one output row of one image.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    n: usize,
    oy: usize,
    ox: usize,
    len: usize,
}

/// Columns that lie in one image: `len` positions from `pos` of image `n`.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    n: usize,
    pos: usize,
    len: usize,
}

/// Splits columns `q0..q0+len` (of `nb*P`, image after image) into runs along output rows,
/// and into spans within images that also end at every multiple of `brk` columns from `q0`.
fn split(
    g: &ConvGeom,
    q0: usize,
    len: usize,
    brk: usize,
    runs: &mut Vec<Run>,
    spans: &mut Vec<Span>,
) {
    let (ow, p) = (g.out_w().max(1), g.col_cols().max(1));
    runs.clear();
    spans.clear();
    let (mut q, end) = (q0, q0 + len);
    while q < end {
        let (n, pos) = (q / p, q % p);
        let l = (p - pos).min(end - q);
        let mut t = q;
        while t < q + l {
            let e = (q0 + (t - q0) / brk * brk + brk).min(q + l);
            spans.push(Span {
                n,
                pos: pos + t - q,
                len: e - t,
            });
            t = e;
        }
        let mut r = pos;
        while r < pos + l {
            let (oy, ox) = (r / ow, r % ow);
            let rl = (ow - ox).min(pos + l - r);
            runs.push(Run { n, oy, ox, len: rl });
            r += rl;
        }
        q += l;
    }
}

/// Column row `k` of a group whose channels start at `ch0`, as `(channel, ky, kx)`.
fn tap(g: &ConvGeom, ch0: usize, k: usize) -> [usize; 3] {
    let kk = g.kernel_h * g.kernel_w;
    [ch0 + k / kk, (k % kk) / g.kernel_w, k % g.kernel_w]
}

/// Steps a `(channel, ky, kx)` tap to the next column row.
fn next_tap(g: &ConvGeom, [c, ky, kx]: [usize; 3]) -> [usize; 3] {
    if kx + 1 < g.kernel_w {
        [c, ky, kx + 1]
    } else if ky + 1 < g.kernel_h {
        [c, ky + 1, 0]
    } else {
        [c + 1, 0, 0]
    }
}

/// Images with their padding written out as zeros, so every column value is a plain read:
/// plane `(n, c)` starts at `(n*C + c) * hp * wp`.
struct Padded<'a> {
    v: &'a [f32],
    hp: usize,
    wp: usize,
}

/// Runs `f` on the `nb` images `x` of sweep `g` padded, followed by `slack` zeros (the
/// images themselves when `g` has no padding and no slack is asked for).
fn padded<R>(g: &ConvGeom, x: &[f32], nb: usize, slack: usize, f: impl FnOnce(&Padded) -> R) -> R {
    let (h, w, ph, pw) = (g.height, g.width, g.pad_h, g.pad_w);
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if ph == 0 && pw == 0 && slack == 0 {
        return f(&Padded { v: x, hp, wp });
    }
    let planes = nb * g.channels;
    with_buffer(&PADDED, planes * hp * wp + slack, |buf| {
        let (body, tail) = buf.split_at_mut(planes * hp * wp);
        tail.fill(0.0);
        for (dst, src) in body.chunks_exact_mut(hp * wp).zip(x.chunks_exact(h * w)) {
            dst[..ph * wp].fill(0.0);
            dst[(ph + h) * wp..].fill(0.0);
            let rows = dst[ph * wp..(ph + h) * wp].chunks_exact_mut(wp);
            for (d, s) in rows.zip(src.chunks_exact(w)) {
                d[..pw].fill(0.0);
                d[pw..pw + w].copy_from_slice(s);
                d[pw + w..].fill(0.0);
            }
        }
        f(&Padded { v: buf, hp, wp })
    })
}

/// Copies `len` values. Runs up to 32 long go as whole groups of 8 (writing up to 7 values
/// past `len`) when both sides have the room: straight-line vector moves, not a call into
/// `memcpy` (which a loop of copies would become).
#[inline(always)]
fn copy_run(src: &[f32], dst: &mut [f32], len: usize) {
    #[inline(always)]
    fn eight(src: &[f32], dst: &mut [f32], at: usize) {
        let s: &[f32; 8] = src[at..at + 8].try_into().unwrap();
        let d: &mut [f32; 8] = (&mut dst[at..at + 8]).try_into().unwrap();
        *d = *s;
    }
    let n8 = len.next_multiple_of(8);
    if n8 > 32 || src.len() < n8 || dst.len() < n8 {
        return dst[..len].copy_from_slice(&src[..len]);
    }
    if n8 >= 8 {
        eight(src, dst, 0);
    }
    if n8 >= 16 {
        eight(src, dst, 8);
    }
    if n8 >= 24 {
        eight(src, dst, 16);
    }
    if n8 >= 32 {
        eight(src, dst, 24);
    }
}

/// Writes the column values of tap `(c, ky, kx)` for `runs` into `dst[..len]`, zero past the
/// runs; values past `len` may be overwritten.
#[inline]
fn fill(
    g: &ConvGeom,
    px: &Padded,
    [c, ky, kx]: [usize; 3],
    runs: &[Run],
    dst: &mut [f32],
    len: usize,
) {
    let (sh, sw) = (g.stride_h, g.stride_w);
    let plane = px.hp * px.wp;
    let mut o = 0;
    for r in runs {
        let y = r.oy * sh + ky * g.dilation_h;
        let at = (r.n * g.channels + c) * plane + y * px.wp + r.ox * sw + kx * g.dilation_w;
        if sw == 1 {
            copy_run(&px.v[at..], &mut dst[o..], r.len);
        } else if r.len > 0 {
            // One bounds check for the run, then a strided walk.
            let src = px.v[at..at + (r.len - 1) * sw + 1].iter().step_by(sw);
            dst[o..o + r.len]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = *s);
        }
        o += r.len;
    }
    dst[o..len].fill(0.0);
}

/// The left operand of a register tile: rows of C.
#[derive(Clone, Copy)]
enum A<'a> {
    /// Row `r` at `a[r*lda..]`.
    Rows { a: &'a [f32], lda: usize },
    /// Packed by [`pack_rows`]: value `(r, p)` at `a[p*MR + r]`.
    Packed(&'a [f32]),
    /// Pixels of an image: value `(r, p)` at `a[off[p] + r*stride]`.
    Image {
        a: &'a [f32],
        off: &'a Offsets,
        stride: usize,
    },
}

/// The right operand of a register tile: `NR` columns of C for every `p`.
#[derive(Clone, Copy)]
enum B<'a> {
    /// Packed: step `p` at `b[p*NR..]`.
    Panel(&'a [f32]),
    /// Read in place: step `p` at `b[off[p]..]`, its second 8 values `half` further on (see
    /// [`Offsets`]).
    Offsets(&'a [f32], &'a Offsets),
}

/// Per-step offsets into an image for [`B::Offsets`], with their maximum, and where the
/// second 8 columns start (8 further on, or the next image row).
#[derive(Default)]
struct Offsets {
    off: Vec<usize>,
    max: usize,
    half: usize,
}

impl Offsets {
    fn set(&mut self, off: impl Iterator<Item = usize>, half: usize) {
        self.off.clear();
        self.off.extend(off);
        self.max = self.off.iter().copied().max().unwrap_or(0);
        self.half = half;
    }

    /// The offsets of the `kg` taps of a group whose channels start at `ch0` in the padded
    /// images `px`, from a tile's corner.
    fn taps(&mut self, g: &ConvGeom, ch0: usize, kg: usize, px: &Padded, half: usize) {
        let plane = px.hp * px.wp;
        let mut t = tap(g, ch0, 0);
        let off = (0..kg).map(|_| {
            let [c, ky, kx] = t;
            t = next_tap(g, t);
            c * plane + ky * g.dilation_h * px.wp + kx * g.dilation_w
        });
        self.set(off, half);
    }
}

/// Raw operands for the kernels (bounds checked by [`tile`]).
mod raw {
    use super::{MR, NR};
    pub trait ReadA: Copy {
        /// # Safety
        /// In bounds as checked by `tile`.
        unsafe fn at(self, r: usize, p: usize) -> *const f32;
    }
    pub trait ReadB: Copy {
        /// # Safety
        /// In bounds as checked by `tile`.
        unsafe fn at(self, p: usize) -> *const f32;
        /// Where the second 8 values start, from `at(p)`.
        fn half(self) -> usize {
            8
        }
    }
    #[derive(Clone, Copy)]
    pub struct Rows(pub *const f32, pub usize);
    #[derive(Clone, Copy)]
    pub struct Packed(pub *const f32);
    #[derive(Clone, Copy)]
    pub struct Panel(pub *const f32);
    #[derive(Clone, Copy)]
    pub struct Image(pub *const f32, pub *const usize, pub usize);
    impl ReadA for Image {
        #[inline(always)]
        unsafe fn at(self, r: usize, p: usize) -> *const f32 {
            unsafe { self.0.add(*self.1.add(p) + r * self.2) }
        }
    }
    #[derive(Clone, Copy)]
    pub struct Offsets(pub *const f32, pub *const usize, pub usize);
    impl ReadA for Rows {
        #[inline(always)]
        unsafe fn at(self, r: usize, p: usize) -> *const f32 {
            unsafe { self.0.add(r * self.1 + p) }
        }
    }
    impl ReadA for Packed {
        #[inline(always)]
        unsafe fn at(self, r: usize, p: usize) -> *const f32 {
            unsafe { self.0.add(p * MR + r) }
        }
    }
    impl ReadB for Panel {
        #[inline(always)]
        unsafe fn at(self, p: usize) -> *const f32 {
            unsafe { self.0.add(p * NR) }
        }
    }
    impl ReadB for Offsets {
        #[inline(always)]
        unsafe fn at(self, p: usize) -> *const f32 {
            unsafe { self.0.add(*self.1.add(p)) }
        }
        #[inline(always)]
        fn half(self) -> usize {
            self.2
        }
    }

    /// The register tile as plain loops (any CPU).
    ///
    /// # Safety
    /// In bounds as checked by `tile`.
    pub unsafe fn tile<A: ReadA, B: ReadB>(
        rows: usize,
        k: usize,
        a: A,
        b: B,
        acc: &mut [f32; MR * NR],
    ) {
        acc.fill(0.0);
        for p in 0..k {
            // SAFETY: forwarded.
            let (lo, hi) = unsafe {
                (
                    std::slice::from_raw_parts(b.at(p), 8),
                    std::slice::from_raw_parts(b.at(p).add(b.half()), NR - 8),
                )
            };
            for r in 0..rows {
                // SAFETY: forwarded.
                let av = unsafe { *a.at(r, p) };
                let out = &mut acc[r * NR..(r + 1) * NR];
                let bp = lo.iter().chain(hi);
                out.iter_mut().zip(bp).for_each(|(s, &b)| *s += av * b);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub mod avx2 {
        use super::{ReadA, ReadB, MR, NR};
        use std::arch::x86_64::*;

        /// The register tile for `R` rows, two 8-wide accumulators a row.
        ///
        /// # Safety
        /// AVX2 and FMA; in bounds as checked by `tile`.
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn tile<const R: usize, A: ReadA, B: ReadB>(
            k: usize,
            a: A,
            b: B,
            acc: &mut [f32; MR * NR],
        ) {
            let mut c = [[_mm256_setzero_ps(); 2]; R];
            for p in 0..k {
                // SAFETY: forwarded.
                unsafe {
                    let bp = b.at(p);
                    let b0 = _mm256_loadu_ps(bp);
                    let b1 = _mm256_loadu_ps(bp.add(b.half()));
                    for (r, c) in c.iter_mut().enumerate() {
                        let av = _mm256_broadcast_ss(&*a.at(r, p));
                        c[0] = _mm256_fmadd_ps(av, b0, c[0]);
                        c[1] = _mm256_fmadd_ps(av, b1, c[1]);
                    }
                }
            }
            for (r, c) in c.iter().enumerate() {
                // SAFETY: acc holds MR*NR values, r < R <= MR.
                unsafe {
                    _mm256_storeu_ps(acc.as_mut_ptr().add(r * NR), c[0]);
                    _mm256_storeu_ps(acc.as_mut_ptr().add(r * NR + 8), c[1]);
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    pub mod avx512 {
        use super::{ReadA, ReadB, NR};
        use std::arch::x86_64::*;

        /// The register tile for `R` rows, one 16-wide accumulator a row: the same work as
        /// [`super::avx2::tile`] in half the instructions (one load of B a step, the
        /// broadcast folded into the multiply-add), which is what holds the 8-wide tile
        /// back where the cores have AVX-512.
        ///
        /// # Safety
        /// AVX-512F and AVX-512DQ; in bounds as checked by `tile`.
        #[target_feature(enable = "avx512f,avx512dq")]
        pub unsafe fn tile<const R: usize, A: ReadA, B: ReadB>(
            k: usize,
            a: A,
            b: B,
            acc: &mut [f32],
        ) {
            assert!(acc.len() >= R * NR);
            let mut c = [_mm512_setzero_ps(); R];
            let half = b.half();
            // SAFETY (both loops): forwarded.
            if half == 8 {
                for p in 0..k {
                    unsafe {
                        let bv = _mm512_loadu_ps(b.at(p));
                        for (r, c) in c.iter_mut().enumerate() {
                            *c = _mm512_fmadd_ps(_mm512_set1_ps(*a.at(r, p)), bv, *c);
                        }
                    }
                }
            } else {
                for p in 0..k {
                    unsafe {
                        let bp = b.at(p);
                        let lo = _mm512_castps256_ps512(_mm256_loadu_ps(bp));
                        let bv = _mm512_insertf32x8::<1>(lo, _mm256_loadu_ps(bp.add(half)));
                        for (r, c) in c.iter_mut().enumerate() {
                            *c = _mm512_fmadd_ps(_mm512_set1_ps(*a.at(r, p)), bv, *c);
                        }
                    }
                }
            }
            for (r, c) in c.iter().enumerate() {
                // SAFETY: acc holds R*NR values (asserted).
                unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(r * NR), *c) };
            }
        }
    }
}

/// Which register tile runs: the widest the CPU has, or (in tests) a given one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Avx512,
    Avx2,
    Plain,
}

impl Kernel {
    /// The widest kernel this CPU runs (detected once).
    fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Kernel::available()[0])
    }

    /// Every kernel this CPU runs, widest first.
    fn available() -> Vec<Kernel> {
        let all = [Kernel::Avx512, Kernel::Avx2, Kernel::Plain];
        all.into_iter().filter(|k| k.runs()).collect()
    }

    /// Whether this CPU has the kernel's instructions.
    fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Kernel::Avx512 => has!("avx512f") && has!("avx512dq"),
                Kernel::Avx2 => has!("avx2") && has!("fma"),
                Kernel::Plain => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernel::Plain
        }
    }
}

/// `acc[r*NR + j] = sum_p A(r, p) * B(p)[j]` for `r < rows`, `p < k`.
fn tile(rows: usize, k: usize, a: A, b: B, acc: &mut [f32; MR * NR]) {
    tile_on(Kernel::best(), rows, k, a, b, acc)
}

/// `acc[r*NR + j] = sum_p a[r*lda + p] * panel[p*NR + j]` for `r < rows <= MR`, `p < k`: the
/// register tile for other products over `NR`-wide panels (the recurrent layers' packed GEMM).
pub(crate) fn rows_times_panel(
    rows: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    panel: &[f32],
    acc: &mut [f32; TILE],
) {
    tile(rows, k, A::Rows { a, lda }, B::Panel(panel), acc)
}

/// [`tile`] on a given kernel (one that this CPU runs).
fn tile_on(kernel: Kernel, rows: usize, k: usize, a: A, b: B, acc: &mut [f32; MR * NR]) {
    assert!((1..=MR).contains(&rows) && kernel.runs());
    if k == 0 {
        acc.fill(0.0);
        return;
    }
    match a {
        A::Rows { a, lda } => assert!(a.len() >= (rows - 1) * lda + k),
        A::Packed(a) => assert!(a.len() >= k * MR),
        A::Image { a, off, stride } => {
            assert!(off.off.len() >= k && a.len() > off.max + (rows - 1) * stride)
        }
    }
    match b {
        B::Panel(b) => assert!(b.len() >= k * NR),
        B::Offsets(b, o) => {
            assert!(o.off.len() >= k && b.len() >= o.max + o.half + 8)
        }
    }
    macro_rules! go {
        ($ra:expr, $rb:expr) => {{
            let (ra, rb) = ($ra, $rb);
            macro_rules! rows {
                ($m:ident) => {
                    match rows {
                        6 => raw::$m::tile::<6, _, _>(k, ra, rb, acc),
                        5 => raw::$m::tile::<5, _, _>(k, ra, rb, acc),
                        4 => raw::$m::tile::<4, _, _>(k, ra, rb, acc),
                        3 => raw::$m::tile::<3, _, _>(k, ra, rb, acc),
                        2 => raw::$m::tile::<2, _, _>(k, ra, rb, acc),
                        _ => raw::$m::tile::<1, _, _>(k, ra, rb, acc),
                    }
                };
            }
            match kernel {
                // SAFETY: the kernel's features are present (`kernel.runs()`, asserted above);
                // every read is in bounds (asserted above).
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => unsafe { rows!(avx512) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => unsafe { rows!(avx2) },
                // SAFETY: every read is in bounds (asserted above).
                _ => unsafe { raw::tile(rows, k, ra, rb, acc) },
            }
        }};
    }
    match (a, b) {
        (A::Rows { a, lda }, B::Panel(b)) => {
            go!(raw::Rows(a.as_ptr(), lda), raw::Panel(b.as_ptr()))
        }
        (A::Packed(a), B::Panel(b)) => go!(raw::Packed(a.as_ptr()), raw::Panel(b.as_ptr())),
        (A::Packed(a), B::Offsets(b, o)) => {
            go!(
                raw::Packed(a.as_ptr()),
                raw::Offsets(b.as_ptr(), o.off.as_ptr(), o.half)
            )
        }
        (A::Image { a, off, stride }, B::Panel(b)) => go!(
            raw::Image(a.as_ptr(), off.off.as_ptr(), stride),
            raw::Panel(b.as_ptr())
        ),
        (A::Image { .. }, B::Offsets(..)) => unreachable!("images are not multiplied together"),
        (A::Rows { a, lda }, B::Offsets(b, o)) => {
            go!(
                raw::Rows(a.as_ptr(), lda),
                raw::Offsets(b.as_ptr(), o.off.as_ptr(), o.half)
            )
        }
    }
}

/// Most pixels in one [`pixels_on`] tile (one 16-wide accumulator each, AVX-512 only).
const MRX: usize = 14;

/// `acc[r*NR + j] = sum_p A(r, p) * panel[p*NR + j]` for `r < rows <= MRX` pixels of an image
/// (`a` is [`A::Image`]): in one tile of up to [`MRX`] rows on AVX-512, [`MR`] rows at a
/// time on the other kernels.
fn pixels_on(
    kernel: Kernel,
    rows: usize,
    k: usize,
    a: A,
    panel: &[f32],
    acc: &mut [f32; MRX * NR],
) {
    let A::Image {
        a: img,
        off,
        stride,
    } = a
    else {
        panic!("pixels_on multiplies an image")
    };
    assert!((1..=MRX).contains(&rows) && kernel.runs() && panel.len() >= k * NR);
    assert!(off.off.len() >= k && img.len() > off.max + (rows - 1) * stride);
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 && k > 0 {
        let ra = raw::Image(img.as_ptr(), off.off.as_ptr(), stride);
        let rb = raw::Panel(panel.as_ptr());
        use raw::avx512::tile as t;
        // SAFETY: AVX-512 is present (`kernel.runs()`); every read is in bounds (asserted
        // above) and acc holds MRX*NR values.
        unsafe {
            match rows {
                14 => t::<14, _, _>(k, ra, rb, acc),
                13 => t::<13, _, _>(k, ra, rb, acc),
                12 => t::<12, _, _>(k, ra, rb, acc),
                11 => t::<11, _, _>(k, ra, rb, acc),
                10 => t::<10, _, _>(k, ra, rb, acc),
                9 => t::<9, _, _>(k, ra, rb, acc),
                8 => t::<8, _, _>(k, ra, rb, acc),
                7 => t::<7, _, _>(k, ra, rb, acc),
                6 => t::<6, _, _>(k, ra, rb, acc),
                5 => t::<5, _, _>(k, ra, rb, acc),
                4 => t::<4, _, _>(k, ra, rb, acc),
                3 => t::<3, _, _>(k, ra, rb, acc),
                2 => t::<2, _, _>(k, ra, rb, acc),
                _ => t::<1, _, _>(k, ra, rb, acc),
            }
        }
        return;
    }
    let mut part = [0.0; TILE];
    for r0 in (0..rows).step_by(MR) {
        let n = MR.min(rows - r0);
        let a = A::Image {
            a: &img[r0 * stride..],
            off,
            stride,
        };
        tile_on(kernel, n, k, a, B::Panel(panel), &mut part);
        acc[r0 * NR..(r0 + n) * NR].copy_from_slice(&part[..n * NR]);
    }
}

/// The widest tile of pixels [`pixels_on`] runs in one go on this CPU.
fn pixels_max() -> usize {
    if Kernel::best() == Kernel::Avx512 {
        MRX
    } else {
        MR
    }
}

/// The tile width that splits rows of `ow` pixels most evenly in tiles of at most `max`.
fn pixels_width(ow: usize, max: usize) -> usize {
    ow.div_ceil(ow.div_ceil(max).max(1)).max(1)
}

/// Packs rows `MR` at a time: tile `t` holds `k` steps of `MR` values (zero past `rows`),
/// `dst[(t*k + p)*MR + r] = src[(t*MR + r)*lda + p]`.
fn pack_rows(src: &[f32], rows: usize, k: usize, lda: usize, dst: &mut [f32]) {
    pack_by::<MR>(src, rows, k, lda, dst)
}

/// Packs `rows x k` (row stride `k`) `NR` rows at a time into panels for [`B::Panel`].
fn pack_panels(src: &[f32], rows: usize, k: usize, dst: &mut [f32]) {
    pack_by::<NR>(src, rows, k, k, dst)
}

/// Packs rows `W` at a time: block `t` holds `k` steps of `W` values (zero past `rows`),
/// `dst[(t*k + p)*W + r] = src[(t*W + r)*lda + p]`.
fn pack_by<const W: usize>(src: &[f32], rows: usize, k: usize, lda: usize, dst: &mut [f32]) {
    for (t, block) in dst
        .chunks_exact_mut(k * W)
        .take(rows.div_ceil(W))
        .enumerate()
    {
        for r in 0..W {
            let row = t * W + r;
            if row < rows {
                let s = &src[row * lda..row * lda + k];
                s.iter()
                    .enumerate()
                    .for_each(|(p, v)| block[p * W + r] = *v);
            } else {
                (0..k).for_each(|p| block[p * W + r] = 0.0);
            }
        }
    }
}

/// How [`forward`] lays a group's product over the register tile.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    /// Output channels across the tile, pixels of a row down it ([`forward_across`]).
    Across,
    /// Output pixels of a row across the tile, read in place ([`forward_in_place`]; stride 1).
    InPlace,
    /// Output pixels across the tile, gathered into panels ([`forward_packed`]).
    Packed,
}

/// The route that wastes the least of the tile for `cg` output channels a group: the share
/// of each tile doing useful work (channel panels times pixel rows for [`Route::Across`],
/// row panels for [`Route::InPlace`]); gathering costs about a tenth, so the packed route
/// counts as 90 %. Measured at CaffeNet's conv1 (stride 4) and conv2 (27-wide rows): across
/// is 20 % faster than the other two; at CIFAR10-quick's the in-place route and it tie.
fn route(g: &ConvGeom, cg: usize) -> Route {
    let ow = g.out_w().max(1);
    let share = |used: usize, whole: usize| used as f64 / whole.max(1) as f64;
    let across = share(cg, cg.next_multiple_of(NR))
        * share(ow, ow.next_multiple_of(pixels_width(ow, pixels_max())));
    let (other, rest) = if in_place(g) {
        let rows = if (6..=8).contains(&ow) {
            1.0
        } else {
            share(ow, ow.next_multiple_of(NR))
        };
        (rows, Route::InPlace)
    } else {
        (0.9, Route::Packed)
    };
    if across > other {
        Route::Across
    } else {
        rest
    }
}

/// The length of balanced blocks of at most `max` that cover `k`.
fn blocks(k: usize, max: usize) -> usize {
    k.div_ceil(k.div_ceil(max).max(1)).max(1)
}

/// Whether [`forward`] reads the image in place (stride 1, output rows at least 3/4 of whole
/// panels) rather than packing the columns.
fn in_place(g: &ConvGeom) -> bool {
    let ow = g.out_w();
    let fits = ow * 4 >= ow.next_multiple_of(NR) * 3 || (6..=8).contains(&ow);
    g.stride_h == 1 && g.stride_w == 1 && fits
}

/// Writes one register tile's `rows x len` block (columns `o..` of the tile) to `d`, row `r`
/// at `d[r*ld..]`: replacing or (`add`) adding, plus `bias[r]` on the `first` reduction block.
#[allow(clippy::too_many_arguments)]
#[inline]
fn store(
    acc: &[f32; MR * NR],
    rows: usize,
    o: usize,
    len: usize,
    d: &mut [f32],
    ld: usize,
    bias: Option<&[f32]>,
    first: bool,
    add: bool,
) {
    for r in 0..rows {
        let d = &mut d[r * ld..r * ld + len];
        let v = &acc[r * NR + o..r * NR + o + len];
        if !first {
            d.iter_mut().zip(v).for_each(|(d, v)| *d += v);
            continue;
        }
        let b = bias.map_or(0.0, |b| b[r]);
        if add {
            d.iter_mut().zip(v).for_each(|(d, v)| *d += v + b);
        } else {
            d.iter_mut().zip(v).for_each(|(d, v)| *d = v + b);
        }
    }
}

/// `y (+)= W * im2col(x) (+ bias)` for `nb` images `x` (`nb x C x H x W`, geometry `g`) into
/// `y` (`nb x co x P`). `w` is `co x K/group`. With `add` the result (and bias) is added to
/// `y`, else it replaces it.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    nb: usize,
    w: &[f32],
    co: usize,
    group: usize,
    bias: Option<&[f32]>,
    add: bool,
    y: &mut [f32],
) {
    let route = route(g, co / group.max(1));
    forward_on(route, g, x, nb, w, co, group, bias, add, y)
}

/// [`forward`] on a given route ([`Route::InPlace`] needs stride 1).
#[allow(clippy::too_many_arguments)]
fn forward_on(
    route: Route,
    g: &ConvGeom,
    x: &[f32],
    nb: usize,
    w: &[f32],
    co: usize,
    group: usize,
    bias: Option<&[f32]>,
    add: bool,
    y: &mut [f32],
) {
    let (kg, cg, cig, p) = (
        g.col_rows() / group,
        co / group,
        g.channels / group,
        g.col_cols(),
    );
    assert!(x.len() >= nb * g.channels * g.height * g.width && y.len() >= nb * co * p);
    assert!(w.len() >= co * kg && bias.is_none_or(|b| b.len() >= co));
    if nb * p == 0 || cg == 0 {
        return;
    }
    assert!(route != Route::InPlace || (g.stride_h, g.stride_w) == (1, 1));
    let across = route == Route::Across;
    let packed = if across {
        cg.next_multiple_of(NR)
    } else {
        cg.next_multiple_of(MR)
    };
    with_buffer(&PACKED_W, packed * kg, |aw| {
        for grp in 0..group {
            if across {
                pack_panels(&w[grp * cg * kg..], cg, kg, aw);
            } else {
                pack_rows(&w[grp * cg * kg..], cg, kg, kg, aw);
            }
            let bias = bias.map(|b| &b[grp * cg..(grp + 1) * cg]);
            let y = GroupOut {
                y,
                co,
                p,
                ch0: grp * cg,
            };
            let job = GroupIn {
                g,
                x,
                nb,
                ch0: grp * cig,
                aw,
                cg,
                kg,
                bias,
                add,
            };
            match route {
                Route::Across => forward_across(job, y),
                Route::InPlace => forward_in_place(job, y),
                Route::Packed => forward_packed(job, y),
            }
        }
    })
}

/// One group's inputs to [`forward`]'s two routes: `nb` images `x`, this group's input
/// channels from `ch0`, its `cg` output channels' weights packed in `aw` (`kg` steps a tile),
/// and the bias and `add` of [`forward`].
#[derive(Clone, Copy)]
struct GroupIn<'a> {
    g: &'a ConvGeom,
    x: &'a [f32],
    nb: usize,
    ch0: usize,
    aw: &'a [f32],
    cg: usize,
    kg: usize,
    bias: Option<&'a [f32]>,
    add: bool,
}

/// One group's outputs: channel `ch0 + c` of image `n` at `y[(n*co + ch0 + c)*p..]`.
struct GroupOut<'a> {
    y: &'a mut [f32],
    co: usize,
    p: usize,
    ch0: usize,
}

impl GroupIn<'_> {
    /// Runs `f` on the group's images padded (`slack` zeros after) and the offsets of its
    /// taps in them (second 8 columns `half` on, see [`Offsets`]).
    fn with_taps<R>(&self, slack: usize, half: usize, f: impl FnOnce(&Padded, &Offsets) -> R) -> R {
        padded(self.g, self.x, self.nb, slack, |px| {
            let mut offs = OFFSETS.with(Cell::take);
            offs.taps(self.g, self.ch0, self.kg, px, half);
            let r = f(px, &offs);
            OFFSETS.with(|c| c.set(offs));
            r
        })
    }
}

impl GroupOut<'_> {
    /// Rows `c..` of image `n` from position `pos`, and their row stride.
    fn at(&mut self, n: usize, c: usize, pos: usize) -> (&mut [f32], usize) {
        let at = (n * self.co + self.ch0 + c) * self.p + pos;
        (&mut self.y[at..], self.p)
    }
}

thread_local! {
    static OFFSETS: Cell<Offsets> = const {
        Cell::new(Offsets {
            off: Vec::new(),
            max: 0,
            half: 8,
        })
    };
}

/// [`forward`] for one group reading the padded image in place: each register tile covers
/// up to `NR` outputs of one output row (or, for rows of at most 8, 8 of each of two rows),
/// and step `k` of the reduction reads the image at the tap's offset from the tile's corner.
fn forward_in_place(job: GroupIn, mut y: GroupOut) {
    let GroupIn {
        g,
        nb,
        aw,
        cg,
        kg,
        bias,
        add,
        ..
    } = job;
    let (oh, ow) = (g.out_h(), g.out_w());
    let wp = g.width + 2 * g.pad_w;
    // Two output rows per tile when they are short: the second 8 columns one row down.
    let two = ow <= 8;
    let half = if two { wp } else { 8 };
    job.with_taps(wp + NR, half, |px, offs| {
        let plane = px.hp * px.wp;
        let mut acc = [0.0f32; MR * NR];
        for n in 0..nb {
            for oy in (0..oh).step_by(if two { 2 } else { 1 }) {
                for ox in (0..ow).step_by(NR) {
                    let corner = n * g.channels * plane + oy * px.wp + ox;
                    let b = B::Offsets(&px.v[corner..], offs);
                    for (t, a) in aw.chunks_exact(kg * MR).enumerate() {
                        let rows = MR.min(cg - t * MR);
                        tile(rows, kg, A::Packed(a), b, &mut acc);
                        let bias = bias.map(|b| &b[t * MR..]);
                        if two {
                            for (o, y0) in [(0, oy), (8, oy + 1)] {
                                if y0 < oh {
                                    let (d, ld) = y.at(n, t * MR, y0 * ow);
                                    store(&acc, rows, o, ow, d, ld, bias, true, add);
                                }
                            }
                        } else {
                            let (d, ld) = y.at(n, t * MR, oy * ow + ox);
                            let len = NR.min(ow - ox);
                            store(&acc, rows, 0, len, d, ld, bias, true, add);
                        }
                    }
                }
            }
        }
    })
}

/// [`forward`] for one group with the output channels across the register tile: `NR`
/// channels (weights packed by [`pack_panels`]) times up to [`MRX`] pixels of one output row
/// on AVX-512 ([`MR`] elsewhere), read from the padded image in place at any stride.
fn forward_across(job: GroupIn, mut y: GroupOut) {
    let GroupIn {
        g,
        nb,
        aw,
        cg,
        kg,
        bias,
        add,
        ..
    } = job;
    let (oh, ow, sh, sw) = (g.out_h(), g.out_w(), g.stride_h, g.stride_w);
    job.with_taps(0, 8, |px, offs| {
        let plane = px.hp * px.wp;
        let mut acc = [0.0f32; MRX * NR];
        let wide = pixels_width(ow, pixels_max());
        let kernel = Kernel::best();
        for n in 0..nb {
            for oy in 0..oh {
                for ox in (0..ow).step_by(wide) {
                    let rows = wide.min(ow - ox);
                    let corner = n * g.channels * plane + oy * sh * px.wp + ox * sw;
                    let a = A::Image {
                        a: &px.v[corner..],
                        off: offs,
                        stride: sw,
                    };
                    let panels = aw.chunks_exact(kg * NR).take(cg.div_ceil(NR));
                    for (jp, panel) in panels.enumerate() {
                        pixels_on(kernel, rows, kg, a, panel, &mut acc);
                        let (d, ld) = y.at(n, jp * NR, oy * ow + ox);
                        for j in 0..NR.min(cg - jp * NR) {
                            let d = &mut d[j * ld..j * ld + rows];
                            let v = (0..rows).map(|r| acc[r * NR + j]);
                            let b = bias.map_or(0.0, |b| b[jp * NR + j]);
                            if add {
                                d.iter_mut().zip(v).for_each(|(d, v)| *d += v + b);
                            } else {
                                d.iter_mut().zip(v).for_each(|(d, v)| *d = v + b);
                            }
                        }
                    }
                }
            }
        }
    })
}

/// [`forward`] for one group packing the columns: `NC` columns at a time, `KC` steps of the
/// reduction at a time, into `NR`-wide panels.
fn forward_packed(job: GroupIn, mut y: GroupOut) {
    let GroupIn {
        g,
        x,
        nb,
        ch0,
        aw,
        cg,
        kg,
        bias,
        add,
    } = job;
    let total = nb * g.col_cols();
    let kc = blocks(kg, KC);
    let mut runs = RUNS.with(Cell::take);
    let mut spans = SPANS.with(Cell::take);
    let mut acc = [0.0f32; MR * NR];
    padded(g, x, nb, 0, |px| {
        with_buffer(&PANEL, kc * NC, |panels| {
            with_buffer(&ROWS, NC + 8, |row| {
                for q0 in (0..total).step_by(NC) {
                    let qn = NC.min(total - q0);
                    split(g, q0, qn, NR, &mut runs, &mut spans);
                    let np = qn.div_ceil(NR);
                    for k0 in (0..kg).step_by(kc) {
                        let kn = kc.min(kg - k0);
                        // Panel jp holds columns jp*NR.. as kn rows of NR.
                        let mut t = tap(g, ch0, k0);
                        for i in 0..kn {
                            fill(g, px, t, &runs, row, np * NR);
                            for (jp, v) in row[..np * NR].chunks_exact(NR).enumerate() {
                                let d = &mut panels[(jp * kn + i) * NR..][..NR];
                                <&mut [f32; NR]>::try_from(d).unwrap().copy_from_slice(v);
                            }
                            t = next_tap(g, t);
                        }
                        let mut si = 0;
                        for jp in 0..np {
                            let panel = &panels[jp * kn * NR..(jp + 1) * kn * NR];
                            let (s0, mut cols) = (si, 0);
                            while si < spans.len() && cols < NR {
                                cols += spans[si].len;
                                si += 1;
                            }
                            for (t, a) in aw.chunks_exact(kg * MR).enumerate() {
                                let rows = MR.min(cg - t * MR);
                                let a = &a[k0 * MR..(k0 + kn) * MR];
                                tile(rows, kn, A::Packed(a), B::Panel(panel), &mut acc);
                                let bias = bias.map(|b| &b[t * MR..]);
                                let mut o = 0;
                                for s in &spans[s0..si] {
                                    let (d, ld) = y.at(s.n, t * MR, s.pos);
                                    store(&acc, rows, o, s.len, d, ld, bias, k0 == 0, add);
                                    o += s.len;
                                }
                            }
                        }
                    }
                }
            })
        })
    });
    RUNS.with(|c| c.set(runs));
    SPANS.with(|c| c.set(spans));
}

/// Below this many rows of `x`, [`few_rows_times_wt`] is the faster inner product.
pub const FEW_ROWS: usize = NR;

/// Reduction length per block of [`few_rows_times_wt`]: a `KW x NR` panel is 256 KiB (L2),
/// and each weight row is read 16 KiB (four pages) at a time. CaffeNet's fc6 (`k` = 9216)
/// reads its weights at ~20 GB/s so, against ~16 GB/s in 4 KiB pieces (`KW` = 1024).
const KW: usize = 4096;

thread_local! {
    static XT: Scratch<f32> = const { Cell::new(Vec::new()) };
    static CT: Scratch<f32> = const { Cell::new(Vec::new()) };
}

/// `y = x W^T` for few rows of `x` (`m <= FEW_ROWS`): `x` is `m x k`, `w` is `n x k`, `y` is
/// `m x n`. At such `m` the product is bound by reading `W`, so each weight is read once, in
/// blocks of `KW`, against `x^T` packed as one panel; the rows of `W` are shared out over the
/// threads. (BLAS packs `W` first, reading it twice and writing it once.)
pub fn few_rows_times_wt(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], y: &mut [f32]) {
    use rayon::prelude::*;
    assert!((1..=FEW_ROWS).contains(&m) && x.len() >= m * k && w.len() >= n * k);
    assert!(y.len() >= m * n);
    if n == 0 {
        return;
    }
    with_buffer(&XT, k * NR, |xt| {
        for (p, row) in xt.chunks_exact_mut(NR).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if j < m { x[j * k + p] } else { 0.0 };
            }
        }
        let xt = &*xt;
        let threads = if super::nested() {
            1
        } else {
            rayon::current_num_threads().max(1)
        };
        let per = n.div_ceil(threads).next_multiple_of(MR);
        let kw = blocks(k, KW);
        // W x^T (n x NR), each part its rows, then transposed into y.
        with_buffer(&CT, n * NR, |ct| {
            ct.fill(0.0);
            ct.par_chunks_mut(per * NR)
                .enumerate()
                .for_each(|(part, c)| {
                    let (i0, i1) = (part * per, (part * per + c.len() / NR).min(n));
                    let mut acc = [0.0f32; MR * NR];
                    for k0 in (0..k).step_by(kw) {
                        let kn = kw.min(k - k0);
                        let b = B::Panel(&xt[k0 * NR..(k0 + kn) * NR]);
                        for t in (i0..i1).step_by(MR) {
                            let rows = MR.min(i1 - t);
                            let a = A::Rows {
                                a: &w[t * k + k0..],
                                lda: k,
                            };
                            tile(rows, kn, a, b, &mut acc);
                            let d = &mut c[(t - i0) * NR..(t - i0 + rows) * NR];
                            d.iter_mut()
                                .zip(&acc[..rows * NR])
                                .for_each(|(d, v)| *d += v);
                        }
                    }
                });
            for (i, row) in ct.chunks_exact(NR).enumerate() {
                for (j, v) in row[..m].iter().enumerate() {
                    y[j * n + i] = *v;
                }
            }
        })
    })
}

/// Whether [`backward_data`] beats `col2im` for this geometry: the flipped sweep computes
/// every input position against the whole kernel, so where the padding is below the
/// kernel's reach (LeNet's pad 0: 12x12 inputs from 8x8 outputs) it multiplies by the zeros
/// around `dy`, `h*w / (out_h*out_w)` times the useful work. Up to an eighth more pays.
pub fn flipped_pays(g: &ConvGeom) -> bool {
    g.height * g.width * 8 <= g.out_h() * g.out_w() * 9
}

/// Whether [`backward_weights`] beats the GEMM for `cg` output channels a group: its panels
/// are [`NR`] channels wide, so at least three quarters of them should be in use (LeNet's
/// conv1, 20 channels in two panels of 16, is better on the GEMM).
pub fn weights_pay(cg: usize) -> bool {
    cg * 4 >= cg.next_multiple_of(NR) * 3
}

/// The geometry and flipped weights that turn `col2im(W^T dy)` into a forward convolution of
/// `dy`, or `None` when that identity does not hold (stride above 1, or padding beyond the
/// dilated kernel).
pub fn flipped_sweep(g: &ConvGeom) -> Option<ConvGeom> {
    let (ekh, ekw) = (
        g.dilation_h * (g.kernel_h - 1),
        g.dilation_w * (g.kernel_w - 1),
    );
    if g.stride_h != 1 || g.stride_w != 1 || g.pad_h > ekh || g.pad_w > ekw {
        return None;
    }
    Some(ConvGeom {
        channels: 0,
        height: g.out_h(),
        width: g.out_w(),
        pad_h: ekh - g.pad_h,
        pad_w: ekw - g.pad_w,
        ..*g
    })
}

/// Writes the weights of the flipped sweep: `wt[(grp*cig + ci) x (co_l, ky, kx)] =
/// w[(grp*cg + co_l) x (ci, kh-1-ky, kw-1-kx)]`.
pub fn flip_weights(g: &ConvGeom, w: &[f32], co: usize, group: usize, wt: &mut [f32]) {
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    let (cg, cig) = (co / group, g.channels / group);
    let kk = kh * kw;
    for grp in 0..group {
        for col in 0..cg {
            for ci in 0..cig {
                let src = &w[((grp * cg + col) * cig + ci) * kk..][..kk];
                let dst = &mut wt[((grp * cig + ci) * cg + col) * kk..][..kk];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
}

/// `dx += col2im(W^T dy)` for stride 1, given [`flipped_sweep`] `gt` (channels unused) and
/// [`flip_weights`] `wt`: the forward convolution of `dy` (`nb x co x out_h x out_w`).
#[allow(clippy::too_many_arguments)]
pub fn backward_data(
    g: &ConvGeom,
    gt: &ConvGeom,
    dy: &[f32],
    nb: usize,
    wt: &[f32],
    co: usize,
    group: usize,
    dx: &mut [f32],
) {
    let sweep = ConvGeom {
        channels: co,
        ..*gt
    };
    debug_assert_eq!((sweep.out_h(), sweep.out_w()), (g.height, g.width));
    forward(&sweep, dy, nb, wt, g.channels, group, None, true, dx);
}

/// `dW += dy * im2col(x)^T` for `nb` images: `x` as in [`forward`], `dy` is `nb x co x P`,
/// `dw` is `co x K/group`.
pub fn backward_weights(
    g: &ConvGeom,
    x: &[f32],
    nb: usize,
    dy: &[f32],
    co: usize,
    group: usize,
    dw: &mut [f32],
) {
    let (kg, cg, cig, p) = (
        g.col_rows() / group,
        co / group,
        g.channels / group,
        g.col_cols(),
    );
    let total = nb * p;
    assert!(x.len() >= nb * g.channels * g.height * g.width && dy.len() >= nb * co * p);
    assert!(dw.len() >= co * kg);
    if total == 0 || cg == 0 {
        return;
    }
    let panels = cg.div_ceil(NR);
    let cgp = panels * NR;
    let qc = blocks(total, QC);
    let mut runs = RUNS.with(Cell::take);
    let mut spans = SPANS.with(Cell::take);
    let mut tile_acc = [0.0f32; MR * NR];
    padded(g, x, nb, 0, |px| {
        with_buffer(&PANEL, panels * qc * NR, |bt| {
            with_buffer(&ROWS, MR * qc + 8, |rows_buf| {
                with_buffer(&ACC, kg * cgp, |acc| {
                    for grp in 0..group {
                        acc.fill(0.0);
                        for q0 in (0..total).step_by(qc) {
                            let qn = qc.min(total - q0);
                            split(g, q0, qn, qn, &mut runs, &mut spans);
                            // dy^T, NR channels per panel: bt[jp][q][j].
                            let bt = &mut bt[..panels * qn * NR];
                            if cg < cgp {
                                bt[(panels - 1) * qn * NR..].fill(0.0);
                            }
                            for j in 0..cg {
                                let (jp, jj) = (j / NR, j % NR);
                                let panel = &mut bt[jp * qn * NR..(jp + 1) * qn * NR];
                                let mut o = 0;
                                for s in &spans {
                                    let at = (s.n * co + grp * cg + j) * p + s.pos;
                                    let src = &dy[at..at + s.len];
                                    let dst = panel[o * NR..(o + s.len) * NR].chunks_exact_mut(NR);
                                    dst.zip(src).for_each(|(d, v)| d[jj] = *v);
                                    o += s.len;
                                }
                            }
                            for i0 in (0..kg).step_by(MR) {
                                let rows = MR.min(kg - i0);
                                let mut t = tap(g, grp * cig, i0);
                                for r in 0..rows {
                                    fill(g, px, t, &runs, &mut rows_buf[r * qn..], qn);
                                    t = next_tap(g, t);
                                }
                                for jp in 0..panels {
                                    let b = &bt[jp * qn * NR..(jp + 1) * qn * NR];
                                    let a = A::Rows {
                                        a: rows_buf,
                                        lda: qn,
                                    };
                                    tile(rows, qn, a, B::Panel(b), &mut tile_acc);
                                    for r in 0..rows {
                                        let d = &mut acc[(i0 + r) * cgp + jp * NR..][..NR];
                                        let v = &tile_acc[r * NR..(r + 1) * NR];
                                        d.iter_mut().zip(v).for_each(|(d, v)| *d += v);
                                    }
                                }
                            }
                        }
                        for j in 0..cg {
                            let d = &mut dw[(grp * cg + j) * kg..(grp * cg + j + 1) * kg];
                            for (k, d) in d.iter_mut().enumerate() {
                                *d += acc[k * cgp + j];
                            }
                        }
                    }
                })
            })
        })
    });
    RUNS.with(|c| c.set(runs));
    SPANS.with(|c| c.set(spans));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::im2col::{col2im_add, im2col};

    pub(super) fn geom(
        c: usize,
        [h, w]: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
    ) -> ConvGeom {
        ConvGeom {
            channels: c,
            height: h,
            width: w,
            kernel_h: k[0],
            kernel_w: k[1],
            stride_h: s[0],
            stride_w: s[1],
            pad_h: p[0],
            pad_w: p[1],
            dilation_h: d[0],
            dilation_w: d[1],
        }
    }

    /// The three products through im2col, naive f64 matrix products and col2im.
    fn reference(
        g: &ConvGeom,
        x: &[f32],
        nb: usize,
        w: &[f32],
        dy: &[f32],
        co: usize,
        group: usize,
    ) -> [Vec<f32>; 3] {
        let (k, p) = (g.col_rows(), g.col_cols());
        let (kg, cg) = (k / group, co / group);
        let img = g.channels * g.height * g.width;
        let (mut y, mut dw, mut dx) = (
            vec![0.0; nb * co * p],
            vec![0.0; co * kg],
            vec![0.0; nb * img],
        );
        let mut col = vec![0.0; k * p];
        for n in 0..nb {
            im2col(&x[n * img..(n + 1) * img], g, &mut col);
            let mut dcol = vec![0.0f32; k * p];
            for grp in 0..group {
                for o in 0..cg {
                    let ch = grp * cg + o;
                    for q in 0..p {
                        let mut s = 0.0f64;
                        for kk in 0..kg {
                            s += w[ch * kg + kk] as f64 * col[(grp * kg + kk) * p + q] as f64;
                        }
                        y[(n * co + ch) * p + q] = s as f32;
                    }
                    for kk in 0..kg {
                        let mut s = 0.0f64;
                        for q in 0..p {
                            s += dy[(n * co + ch) * p + q] as f64
                                * col[(grp * kg + kk) * p + q] as f64;
                        }
                        dw[ch * kg + kk] += s as f32;
                    }
                }
                for kk in 0..kg {
                    for q in 0..p {
                        let mut s = 0.0f64;
                        for o in 0..cg {
                            let ch = grp * cg + o;
                            s += w[ch * kg + kk] as f64 * dy[(n * co + ch) * p + q] as f64;
                        }
                        dcol[(grp * kg + kk) * p + q] = s as f32;
                    }
                }
            }
            col2im_add(&dcol, g, &mut dx[n * img..(n + 1) * img]);
        }
        [y, dw, dx]
    }

    /// An image's outputs do not depend on the batch around it: the same bits for a batch of
    /// 32 and for each half (data-parallel ranks must match one process with their union).
    #[test]
    fn outputs_are_the_same_bits_in_any_batch() {
        let shapes = [
            (1, 28, 20, 0),
            (20, 12, 50, 0),
            (32, 8, 64, 2),
            (3, 9, 7, 1),
        ];
        for (c, hw, co, pad) in shapes {
            let g = geom(c, [hw, hw], [5, 5], [1, 1], [pad, pad], [1, 1]);
            let (nb, p) = (32, g.col_cols());
            let x: Vec<f32> = (0..nb * c * hw * hw)
                .map(|i| (i as f32 * 0.3).sin())
                .collect();
            let w: Vec<f32> = (0..co * c * 25).map(|i| (i as f32 * 0.7).cos()).collect();
            let mut all = vec![0.0; nb * co * p];
            forward(&g, &x, nb, &w, co, 1, None, false, &mut all);
            for half in 0..2 {
                let xs = &x[half * 16 * c * hw * hw..];
                let mut y = vec![0.0; 16 * co * p];
                forward(&g, xs, 16, &w, co, 1, None, false, &mut y);
                let want = &all[half * 16 * co * p..][..16 * co * p];
                let same = y.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{c}x{hw}x{hw} -> {co}, pad {pad}, half {half}");
            }
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn products_match_im2col_at_odd_sizes() {
        // (channels, [h, w], kernel, stride, pad, dilation, co, group, nb)
        let cases: &[(
            usize,
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            usize,
            usize,
            usize,
        )] = &[
            (3, [7, 5], [3, 3], [1, 1], [0, 0], [1, 1], 4, 1, 2),
            (4, [9, 7], [3, 2], [2, 1], [1, 2], [1, 1], 6, 2, 3),
            (6, [11, 10], [3, 3], [2, 3], [2, 1], [2, 2], 3, 3, 1),
            (3, [5, 5], [1, 1], [1, 1], [0, 0], [1, 1], 8, 1, 5),
            (2, [8, 8], [1, 1], [2, 2], [1, 1], [1, 1], 2, 1, 1),
            (5, [16, 16], [5, 5], [1, 1], [2, 2], [1, 1], 13, 1, 3),
            (4, [9, 27], [3, 3], [1, 1], [1, 1], [1, 1], 8, 2, 2),
            (6, [8, 8], [5, 5], [1, 1], [2, 2], [1, 1], 7, 1, 3),
            (3, [9, 7], [3, 3], [1, 1], [1, 1], [1, 1], 5, 1, 2),
            (32, [6, 5], [3, 3], [1, 1], [2, 2], [1, 1], 32, 2, 2),
            // Rows of 6 with no padding: the second row starts 6 values on (overlapping).
            (4, [6, 6], [1, 1], [1, 1], [0, 0], [1, 1], 4, 4, 2),
            (2, [7, 8], [2, 3], [1, 1], [0, 0], [1, 1], 9, 1, 3),
            // LeNet's convolutions at a batch of 32.
            (1, [28, 28], [5, 5], [1, 1], [0, 0], [1, 1], 20, 1, 32),
            (20, [12, 12], [5, 5], [1, 1], [0, 0], [1, 1], 50, 1, 32),
            (4, [12, 12], [5, 5], [1, 1], [0, 0], [1, 1], 10, 2, 2),
            (2, [5, 14], [3, 2], [1, 1], [0, 1], [2, 1], 7, 1, 3),
            (4, [6, 19], [5, 3], [1, 1], [2, 1], [1, 2], 20, 2, 2),
            (3, [23, 23], [11, 11], [4, 4], [0, 0], [1, 1], 7, 1, 2),
            (2, [3, 4], [2, 2], [1, 1], [1, 1], [1, 1], 17, 1, 9),
            (1, [1, 1], [1, 1], [1, 1], [0, 0], [1, 1], 3, 1, 4),
        ];
        for &(c, hw, k, s, p, d, co, group, nb) in cases {
            let g = geom(c, hw, k, s, p, d);
            let img = c * hw[0] * hw[1];
            let (kg, pp) = (g.col_rows() / group, g.col_cols());
            let x: Vec<f32> = (0..nb * img).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: Vec<f32> = (0..co * kg).map(|i| (i as f32 * 0.71).cos()).collect();
            let dy: Vec<f32> = (0..nb * co * pp).map(|i| (i as f32 * 0.23).sin()).collect();
            let bias: Vec<f32> = (0..co).map(|i| i as f32 * 0.1 - 0.3).collect();
            let [y0, dw0, dx0] = reference(&g, &x, nb, &w, &dy, co, group);
            let what = format!("{g:?} co {co} group {group} nb {nb}");
            let want: Vec<f32> = y0
                .iter()
                .enumerate()
                .map(|(i, v)| v + bias[(i / pp) % co])
                .collect();
            let twice: Vec<f32> = want.iter().zip(&y0).map(|(a, b)| a + b).collect();
            let mut routes = vec![Route::Across, Route::Packed];
            if s == [1, 1] {
                routes.push(Route::InPlace);
            }
            for route in routes {
                let mut y = vec![f32::NAN; nb * co * pp];
                forward_on(route, &g, &x, nb, &w, co, group, Some(&bias), false, &mut y);
                crate::testing::assert_close(&y, &want, 1e-4);
                // Adding onto what is there.
                forward_on(route, &g, &x, nb, &w, co, group, None, true, &mut y);
                crate::testing::assert_close(&y, &twice, 1e-4);
            }
            let mut dw = vec![0.5; co * kg];
            backward_weights(&g, &x, nb, &dy, co, group, &mut dw);
            let want: Vec<f32> = dw0.iter().map(|v| v + 0.5).collect();
            crate::testing::assert_close(&dw, &want, 1e-4);
            match flipped_sweep(&g) {
                Some(gt) => {
                    let mut wt = vec![0.0; w.len()];
                    flip_weights(&g, &w, co, group, &mut wt);
                    let mut dx = vec![0.25; nb * img];
                    backward_data(&g, &gt, &dy, nb, &wt, co, group, &mut dx);
                    let want: Vec<f32> = dx0.iter().map(|v| v + 0.25).collect();
                    crate::testing::assert_close(&dx, &want, 1e-4);
                }
                None => assert!(s != [1, 1], "{what}"),
            }
        }
    }

    #[test]
    fn few_rows_times_wt_matches_f64() {
        for (m, n, k) in [(1, 1, 1), (10, 37, 2100), (16, 13, 5), (3, 6, 1024)] {
            let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut y = vec![f32::NAN; m * n];
            few_rows_times_wt(m, n, k, &x, &w, &mut y);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                        .sum();
                    assert!(
                        (y[i * n + j] as f64 - want).abs() < 1e-3,
                        "{m}x{n}x{k} ({i}, {j})"
                    );
                }
            }
        }
    }

    /// Every operand layout through every kernel this CPU runs, against f64; offsets with the
    /// second 8 columns right after the first, overlapping them, and further on.
    #[test]
    fn tile_kernels_agree_for_every_layout() {
        let k = 37;
        let lda = 41;
        let a: Vec<f32> = (0..MR * lda).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut ap = vec![0.0; MR * k];
        pack_rows(&a, MR, k, lda, &mut ap);
        let b: Vec<f32> = (0..k * NR).map(|i| (i as f32 * 0.7).cos()).collect();
        // An image read through offsets: step p's columns at off[p]..+8 and off[p]+half..+8.
        let img: Vec<f32> = (0..3 * k * NR).map(|i| (i as f32 * 0.13).sin()).collect();
        let kernels = Kernel::available();
        assert!(kernels.contains(&Kernel::Plain));
        for half in [8, 5, 11] {
            let mut offs = Offsets::default();
            offs.set((0..k).map(|p| (k - 1 - p) * 2 * NR + p % 3), half);
            let at_img =
                |p: usize, j: usize| img[offs.off[p] + if j < 8 { j } else { half + j - 8 }] as f64;
            for rows in 1..=MR {
                let ops = [
                    (A::Rows { a: &a, lda }, B::Panel(&b)),
                    (A::Packed(&ap), B::Panel(&b)),
                    (A::Packed(&ap), B::Offsets(&img, &offs)),
                    (A::Rows { a: &a, lda }, B::Offsets(&img, &offs)),
                ];
                for (oa, ob) in ops {
                    let want = |r: usize, j: usize| -> f64 {
                        let bv = |p: usize| match ob {
                            B::Panel(_) => b[p * NR + j] as f64,
                            B::Offsets(..) => at_img(p, j),
                        };
                        (0..k).map(|p| a[r * lda + p] as f64 * bv(p)).sum()
                    };
                    for &kernel in &kernels {
                        let mut x = [f32::NAN; MR * NR];
                        tile_on(kernel, rows, k, oa, ob, &mut x);
                        for r in 0..rows {
                            for j in 0..NR {
                                let (got, w) = (x[r * NR + j] as f64, want(r, j));
                                assert!((got - w).abs() < 1e-4, "{kernel:?} {half} {rows} {r} {j}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Pixels of an image (at strides 1 and 3) times a weight panel, on every kernel this CPU
    /// runs and every tile height up to [`MRX`], against f64.
    #[test]
    fn pixel_tiles_agree_on_every_kernel() {
        let k = 29;
        let panel: Vec<f32> = (0..k * NR).map(|i| (i as f32 * 0.7).cos()).collect();
        let img: Vec<f32> = (0..3 * k * NR).map(|i| (i as f32 * 0.13).sin()).collect();
        let mut offs = Offsets::default();
        offs.set((0..k).map(|p| (k - 1 - p) * 2 * NR + p % 5), 8);
        for stride in [1, 3] {
            for rows in 1..=MRX {
                let a = A::Image {
                    a: &img,
                    off: &offs,
                    stride,
                };
                for kernel in Kernel::available() {
                    let mut acc = [f32::NAN; MRX * NR];
                    pixels_on(kernel, rows, k, a, &panel, &mut acc);
                    for r in 0..rows {
                        for j in 0..NR {
                            let want: f64 = (0..k)
                                .map(|p| {
                                    let x = img[offs.off[p] + r * stride] as f64;
                                    x * panel[p * NR + j] as f64
                                })
                                .sum();
                            let got = acc[r * NR + j] as f64;
                            let what = format!("{kernel:?} stride {stride} rows {rows}");
                            assert!((got - want).abs() < 1e-4, "{what} ({r}, {j})");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use crate::math::conv_gemm::tests::geom;

    /// LeNet's and CIFAR10-quick's convolutions on one thread, a batch part of 10: forward,
    /// dW and dx (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn layer_parts() {
        let shapes = [
            ("lenet conv1", 1, 28, 20, 0, 5, 1),
            ("lenet conv2", 20, 12, 50, 0, 5, 1),
            ("cifar conv1", 3, 32, 32, 2, 5, 1),
            ("cifar conv2", 32, 16, 32, 2, 5, 1),
            ("cifar conv3", 32, 8, 64, 2, 5, 1),
            ("caffenet conv1", 3, 227, 96, 0, 11, 4),
            ("caffenet conv2 (a group)", 48, 27, 128, 2, 5, 1),
        ];
        for (name, c, hw, co, pad, k, s) in shapes {
            let g = geom(c, [hw, hw], [k, k], [s, s], [pad, pad], [1, 1]);
            let (nb, p) = (10, g.col_cols());
            let x: Vec<f32> = (0..nb * c * hw * hw)
                .map(|i| (i as f32 * 0.3).sin())
                .collect();
            let w: Vec<f32> = (0..co * c * k * k)
                .map(|i| (i as f32 * 0.7).cos())
                .collect();
            let mut y = vec![0.0; nb * co * p];
            let mut dw = vec![0.0; w.len()];
            let mut dx = vec![0.0; x.len()];
            let mut wt = vec![0.0; w.len()];
            flip_weights(&g, &w, co, 1, &mut wt);
            let gt = flipped_sweep(&g);
            let flops = (2 * nb * co * p * c * k * k) as f64;
            let time = |f: &mut dyn FnMut()| {
                f();
                let t = std::time::Instant::now();
                for _ in 0..20 {
                    f();
                }
                let s = t.elapsed().as_secs_f64() / 20.0;
                format!("{:.3} ms {:.0} GFLOP/s", s * 1e3, flops / s / 1e9)
            };
            let f = time(&mut || forward(&g, &x, nb, &w, co, 1, None, false, &mut y));
            let bw = time(&mut || backward_weights(&g, &x, nb, &y, co, 1, &mut dw));
            let bd = match gt {
                Some(gt) => time(&mut || backward_data(&g, &gt, &y, nb, &wt, co, 1, &mut dx)),
                None => "-".into(),
            };
            eprintln!("{name}: forward {f}, dW {bw}, dx {bd}");
        }
    }
    #[test]
    #[ignore]
    fn tile_speed() {
        let k = 200;
        let a: Vec<f32> = (0..32 * 800).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut ap = vec![0.0; MR * k];
        pack_rows(&a, MR, k, 800, &mut ap);
        let b: Vec<f32> = (0..k * NR).map(|i| (i as f32 * 0.7).cos()).collect();
        let mut acc = [0.0; MR * NR];
        for kernel in Kernel::available() {
            for packed in [false, true] {
                let t = std::time::Instant::now();
                let reps = 200000;
                for i in 0..reps {
                    let a = if packed {
                        A::Packed(&ap)
                    } else {
                        A::Rows {
                            a: &a[(i % 5) * 6 * 800..],
                            lda: 800,
                        }
                    };
                    tile_on(kernel, 6, k, a, B::Panel(&b), &mut acc);
                }
                let s = t.elapsed().as_secs_f64();
                let gf = (reps * 6 * 16 * k * 2) as f64 / s / 1e9;
                eprintln!(
                    "tile {kernel:?} packed {packed}: {gf:.1} GFLOP/s {}",
                    acc[3]
                );
            }
        }
    }
}
