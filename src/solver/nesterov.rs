//! Nesterov's accelerated gradient, Caffe's form: `h_old = h; h = momentum * h + lr * g;`
//! step `(1 + momentum) * h - momentum * h_old`.

use super::UpdateCtx;

/// Writes the step into `g`; `h` is the momentum history.
pub(super) fn compute_update(c: &UpdateCtx, g: &mut [f32], h: &mut [f32]) {
    for (g, h) in g.iter_mut().zip(h.iter_mut()) {
        let old = *h;
        *h = c.momentum * *h + c.lr * *g;
        *g = (1.0 + c.momentum) * *h - c.momentum * old;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_ahead_step() {
        let c = UpdateCtx {
            lr: 0.5,
            momentum: 0.5,
            ..UpdateCtx::default()
        };
        let mut h = vec![2.0f32];
        let mut g = vec![1.0f32];
        compute_update(&c, &mut g, &mut h);
        // h = 0.5*2 + 0.5*1 = 1.5; step = 1.5*1.5 - 0.5*2 = 1.25
        assert_eq!(h, vec![1.5]);
        assert_eq!(g, vec![1.25]);
    }
}
