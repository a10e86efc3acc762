//! AdaGrad: `H += g^2`, step `lr * g / (sqrt(H) + delta)`.

use super::UpdateCtx;

/// Writes the step into `g`; `h` accumulates squared gradients.
pub(super) fn compute_update(c: &UpdateCtx, g: &mut [f32], h: &mut [f32]) {
    for (g, h) in g.iter_mut().zip(h.iter_mut()) {
        *h += *g * *g;
        *g = c.lr * (*g / (h.sqrt() + c.delta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_squares() {
        let c = UpdateCtx {
            lr: 1.0,
            delta: 0.0,
            ..UpdateCtx::default()
        };
        let mut h = vec![0.0f32];
        let mut g = vec![3.0f32];
        compute_update(&c, &mut g, &mut h);
        assert_eq!((h[0], g[0]), (9.0, 1.0));
        let mut g = vec![4.0f32];
        compute_update(&c, &mut g, &mut h);
        // H = 25, step = 4/5
        assert_eq!((h[0], g[0]), (25.0, 0.8));
    }
}
