//! Adam (Kingma & Ba), Caffe's form: `m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;`
//! step `lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)` with `t = iter + 1`,
//! `b1 = momentum`, `b2 = momentum2`, `eps = delta`.

use super::UpdateCtx;

/// Writes the step into `g`; `m` and `v` are the first and second moment estimates.
pub(super) fn compute_update(c: &UpdateCtx, g: &mut [f32], m: &mut [f32], v: &mut [f32]) {
    let (b1, b2) = (c.momentum, c.momentum2);
    let t = c.t;
    let correction = ((1.0 - (b2 as f64).powi(t)).sqrt() / (1.0 - (b1 as f64).powi(t))) as f32;
    let rate = c.lr * correction;
    for ((g, m), v) in g.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = b1 * *m + (1.0 - b1) * *g;
        *v = b2 * *v + (1.0 - b2) * *g * *g;
        *g = rate * (*m / (v.sqrt() + c.delta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_is_lr_times_sign() {
        // With bias correction the first step is lr * g / (|g| + eps') for any g.
        let c = UpdateCtx {
            lr: 0.001,
            momentum: 0.9,
            momentum2: 0.999,
            delta: 1e-8,
            t: 1,
            ..UpdateCtx::default()
        };
        let (mut m, mut v) = (vec![0.0f32; 2], vec![0.0f32; 2]);
        let mut g = vec![3.0f32, -0.5];
        compute_update(&c, &mut g, &mut m, &mut v);
        assert!((g[0] - 0.001).abs() < 1e-8, "{g:?}");
        assert!((g[1] + 0.001).abs() < 1e-8, "{g:?}");
    }
}
