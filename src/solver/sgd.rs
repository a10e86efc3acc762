//! SGD with momentum, as Caffe does it: the learning rate is folded into the history,
//! `h = momentum * h + lr * g`, and the step is `h`.

use super::UpdateCtx;

/// Writes the step into `g`; `h` is the momentum history.
pub(super) fn compute_update(c: &UpdateCtx, g: &mut [f32], h: &mut [f32]) {
    for (g, h) in g.iter_mut().zip(h.iter_mut()) {
        *h = c.momentum * *h + c.lr * *g;
        *g = *h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_folds_the_rate() {
        let c = UpdateCtx {
            lr: 0.1,
            momentum: 0.9,
            ..UpdateCtx::default()
        };
        let mut h = vec![1.0f32, -2.0];
        let mut g = vec![0.5f32, 4.0];
        compute_update(&c, &mut g, &mut h);
        // h = 0.9*h + 0.1*g
        assert_eq!(h, vec![0.9 + 0.05, -1.8 + 0.4]);
        assert_eq!(g, h);
    }
}
