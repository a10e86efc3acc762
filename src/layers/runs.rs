//! Copying along an axis (`Concat`, `Slice`, `Tile`): a blob cut at an axis is `outer` runs of
//! contiguous values; these helpers move run `o` of one buffer to run `o` of another.

/// Where the runs of one buffer lie: run `o` starts at `o * stride + offset`.
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    pub stride: usize,
    pub offset: usize,
}

impl Runs {
    /// Runs of `len` values packed end to end.
    pub fn packed(len: usize) -> Self {
        Runs {
            stride: len,
            offset: 0,
        }
    }

    /// Runs `stride` apart, the first at `offset`.
    pub fn at(stride: usize, offset: usize) -> Self {
        Runs { stride, offset }
    }

    fn range(self, o: usize, len: usize) -> std::ops::Range<usize> {
        let s = o * self.stride + self.offset;
        s..s + len
    }
}

/// For each of `outer` runs of `len` values: `dst` run `o` = `src` run `o`.
pub fn copy_runs(outer: usize, len: usize, src: &[f32], from: Runs, dst: &mut [f32], to: Runs) {
    for o in 0..outer {
        dst[to.range(o, len)].copy_from_slice(&src[from.range(o, len)]);
    }
}

/// For each of `outer` runs of `len` values: `dst` run `o` += `src` run `o`.
pub fn add_runs(outer: usize, len: usize, src: &[f32], from: Runs, dst: &mut [f32], to: Runs) {
    for o in 0..outer {
        dst[to.range(o, len)]
            .iter_mut()
            .zip(&src[from.range(o, len)])
            .for_each(|(d, s)| *d += s);
    }
}

#[cfg(test)]
mod tests {
    use super::{add_runs, copy_runs, Runs};

    #[test]
    fn runs_copy_and_add_between_strides() {
        // Two runs of 2 from a packed buffer into columns 1..3 of a 2x4 buffer.
        let src = [1.0, 2.0, 3.0, 4.0];
        let mut dst = [0.0; 8];
        copy_runs(2, 2, &src, Runs::packed(2), &mut dst, Runs::at(4, 1));
        assert_eq!(dst, [0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0]);
        let mut back = [10.0; 4];
        add_runs(2, 2, &dst, Runs::at(4, 1), &mut back, Runs::packed(2));
        assert_eq!(back, [11.0, 12.0, 13.0, 14.0]);
    }
}
