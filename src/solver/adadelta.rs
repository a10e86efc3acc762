//! AdaDelta (Zeiler), Caffe's form with `momentum` as the decay rho and `delta` as epsilon:
//! `Eg = rho*Eg + (1-rho)*g^2; u = g * sqrt((Edx + delta) / (Eg + delta));
//! Edx = rho*Edx + (1-rho)*u^2`; step `lr * u`.

use super::UpdateCtx;

/// Writes the step into `g`; `eg` accumulates squared gradients, `edx` squared updates.
pub(super) fn compute_update(c: &UpdateCtx, g: &mut [f32], eg: &mut [f32], edx: &mut [f32]) {
    let rho = c.momentum;
    for ((g, eg), edx) in g.iter_mut().zip(eg.iter_mut()).zip(edx.iter_mut()) {
        *eg = rho * *eg + (1.0 - rho) * *g * *g;
        let u = *g * ((*edx + c.delta) / (*eg + c.delta)).sqrt();
        *edx = rho * *edx + (1.0 - rho) * u * u;
        *g = c.lr * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_accumulators() {
        let c = UpdateCtx {
            lr: 1.0,
            momentum: 0.5,
            delta: 1.0,
            ..UpdateCtx::default()
        };
        let (mut eg, mut edx) = (vec![0.0f32], vec![0.0f32]);
        let mut g = vec![2.0f32];
        compute_update(&c, &mut g, &mut eg, &mut edx);
        // Eg = 2; u = 2*sqrt(1/3); Edx = 0.5*u^2 = 2/3
        let u = 2.0 * (1.0f32 / 3.0).sqrt();
        assert_eq!(eg[0], 2.0);
        assert!((g[0] - u).abs() < 1e-6);
        assert!((edx[0] - 2.0 / 3.0).abs() < 1e-6);
    }
}
