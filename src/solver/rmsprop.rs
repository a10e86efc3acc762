//! RMSProp: `H = rms_decay * H + (1 - rms_decay) * g^2`, step `lr * g / (sqrt(H) + delta)`.

use super::UpdateCtx;

/// Writes the step into `g`; `h` is the running mean of squared gradients.
pub(super) fn compute_update(c: &UpdateCtx, g: &mut [f32], h: &mut [f32]) {
    for (g, h) in g.iter_mut().zip(h.iter_mut()) {
        *h = c.rms_decay * *h + (1.0 - c.rms_decay) * *g * *g;
        *g = c.lr * (*g / (h.sqrt() + c.delta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_mean_of_squares() {
        let c = UpdateCtx {
            lr: 0.1,
            rms_decay: 0.75,
            delta: 0.0,
            ..UpdateCtx::default()
        };
        let mut h = vec![4.0f32];
        let mut g = vec![2.0f32];
        compute_update(&c, &mut g, &mut h);
        // H = 0.75*4 + 0.25*4 = 4; step = 0.1 * 2 / 2
        assert_eq!(h[0], 4.0);
        assert!((g[0] - 0.1).abs() < 1e-7);
    }
}
