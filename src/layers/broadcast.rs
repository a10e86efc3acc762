//! What `Bias` and `Scale` share: an operand (learned, or bottom 1) broadcast over axes
//! `[axis, axis + num_axes)` of bottom 0, in place or not.

use super::{BlobCounts, Inplace};
use crate::{Blob, Result};

/// Broadcast geometry shared by `Scale` and `Bias`: bottom 0 is `outer x dim x inner`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bcast {
    pub outer: usize,
    pub dim: usize,
    pub inner: usize,
}

/// The shape of the learned blob for `axis`/`num_axes` on bottom `x`.
pub fn param_shape(x: &Blob, axis: i32, num_axes: i32) -> Result<Vec<usize>> {
    crate::ensure!(
        num_axes >= -1,
        "num_axes must be non-negative, or -1 to extend to the end of bottom[0], got {num_axes}"
    );
    // A scalar (num_axes 0) may use any axis, even one past the end.
    let a = if num_axes == 0 && axis as usize == x.num_axes() {
        x.num_axes()
    } else {
        x.canonical_axis(axis)?
    };
    let end = if num_axes == -1 {
        x.num_axes()
    } else {
        a + num_axes as usize
    };
    crate::ensure!(
        end <= x.num_axes(),
        "axis {axis} + num_axes {num_axes} runs past the end of bottom[0] (shape {})",
        x.shape_string()
    );
    Ok(x.shape[a..end].to_vec())
}

/// Checks that `p` (shape of the factor) matches `x` from `axis` on and returns the geometry.
pub fn geometry(x: &Blob, p_shape: &[usize], axis: i32) -> Result<Bcast> {
    let a = if p_shape.is_empty() {
        0
    } else {
        x.canonical_axis(axis)?
    };
    crate::ensure!(
        a + p_shape.len() <= x.num_axes() && x.shape[a..a + p_shape.len()] == *p_shape,
        "the broadcast blob of shape {} does not match bottom[0] (shape {}) from axis {a}",
        crate::blob::shape_str(p_shape),
        x.shape_string()
    );
    let dim: usize = p_shape.iter().product();
    Ok(Bcast {
        outer: x.count_range(0, a),
        dim,
        inner: x.count_from(a + p_shape.len()),
    })
}

/// `db[d] += sum over outer, inner of dy`.
pub fn bias_grad(g: Bcast, dy: &[f32], db: &mut [f32]) {
    for o in 0..g.outer {
        for (d, acc) in db.iter_mut().enumerate().take(g.dim) {
            let base = (o * g.dim + d) * g.inner;
            *acc += dy[base..base + g.inner].iter().sum::<f32>();
        }
    }
}

/// `y[o, d, i] = x[o, d, i] + b[d]` (`x` may be `y`'s old contents).
pub fn add_bias(g: Bcast, b: &[f32], y: &mut [f32]) {
    for o in 0..g.outer {
        for (d, &bv) in b.iter().enumerate().take(g.dim) {
            let base = (o * g.dim + d) * g.inner;
            y[base..base + g.inner].iter_mut().for_each(|v| *v += bv);
        }
    }
}

/// The broadcast operand of `Bias` and `Scale`: its axes, where it comes from, its geometry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Operand {
    pub axis: i32,
    pub num_axes: i32,
    /// True when the operand is learned (one bottom), false when it is bottom 1.
    pub learned: bool,
    /// Geometry from the last reshape.
    pub g: Bcast,
}

impl Operand {
    /// One or two bottoms, one top.
    pub fn blob_counts() -> BlobCounts {
        BlobCounts {
            min_bottom: Some(1),
            max_bottom: Some(2),
            exact_top: Some(1),
            ..Default::default()
        }
    }

    /// At setup: learned when there is one bottom; returns the operand's shape.
    pub fn set_up(&mut self, bottom: &[&Blob]) -> Result<Vec<usize>> {
        self.learned = bottom.len() == 1;
        if self.learned {
            param_shape(bottom[0], self.axis, self.num_axes)
        } else {
            Ok(bottom[1].shape.clone())
        }
    }

    /// Checks the operand against bottom 0, finds the geometry and shapes the top.
    pub fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let x = Inplace::input_blob(bottom, top);
        // The operand's shape is fixed by setup; find it from bottom 1 or from the axis rule.
        let p_shape = if self.learned {
            param_shape(x, self.axis, self.num_axes)?
        } else {
            bottom[1].shape.clone()
        };
        self.g = geometry(x, &p_shape, self.axis)?;
        Inplace::reshape(bottom, top);
        Ok(())
    }

    /// The operand's values: learnable blob 0, or bottom 1.
    pub fn values<'a>(&self, bottom: &'a [&Blob], params: &'a [&mut Blob]) -> &'a [f32] {
        if self.learned {
            &params[0].data
        } else {
            &bottom[1].data
        }
    }

    /// Where the operand's gradient goes: learnable blob 0, or bottom 1 when `down` asks.
    pub fn diff<'a>(
        &self,
        down: &[bool],
        bottom: &'a mut [&mut Blob],
        params: &'a mut [&mut Blob],
    ) -> Option<&'a mut [f32]> {
        if self.learned {
            Some(&mut params[0].diff)
        } else if down.get(1).copied().unwrap_or(false) {
            Some(&mut bottom[1].diff)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{add_bias, bias_grad, geometry, param_shape};
    use crate::Blob;

    #[test]
    fn geometry_and_bias_round_trip() {
        let x = Blob::new(&[2, 3, 2]);
        assert_eq!(param_shape(&x, 1, 1).unwrap(), vec![3]);
        assert_eq!(param_shape(&x, 1, -1).unwrap(), vec![3, 2]);
        assert!(param_shape(&x, 2, 2).is_err());
        let g = geometry(&x, &[3], 1).unwrap();
        assert_eq!((g.outer, g.dim, g.inner), (2, 3, 2));
        assert!(geometry(&x, &[2], 1).is_err());
        let mut y = vec![0.0; 12];
        add_bias(g, &[1.0, 2.0, 3.0], &mut y);
        assert_eq!(y, [1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]);
        let mut db = vec![0.5; 3];
        bias_grad(g, &y, &mut db);
        assert_eq!(db, vec![4.5, 8.5, 12.5]);
    }
}
