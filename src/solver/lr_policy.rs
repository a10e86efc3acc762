//! Learning-rate policies (`lr_policy`), with Caffe's formulas. `iter` is the number of updates
//! already applied (0 for the first update).

use crate::proto::SolverParameter;
use crate::{Error, Result};

/// A learning-rate policy with its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum LrPolicy {
    /// `base_lr`.
    Fixed,
    /// `base_lr * gamma^floor(iter / stepsize)`.
    Step { gamma: f32, stepsize: i32 },
    /// `base_lr * gamma^iter`.
    Exp { gamma: f32 },
    /// `base_lr * (1 + gamma * iter)^(-power)`.
    Inv { gamma: f32, power: f32 },
    /// `base_lr * gamma^current_step`; `current_step` advances when `iter >= stepvalue[step]`.
    MultiStep { gamma: f32, stepvalue: Vec<i32> },
    /// `base_lr * (1 - iter / max_iter)^power`.
    Poly { power: f32, max_iter: i32 },
    /// `base_lr / (1 + exp(-gamma * (iter - stepsize)))`.
    Sigmoid { gamma: f32, stepsize: i32 },
}

impl LrPolicy {
    /// Reads `lr_policy` and its parameters from a solver; checks what Caffe checks.
    pub fn from_solver(p: &SolverParameter) -> Result<LrPolicy> {
        let name = p.lr_policy.as_deref().unwrap_or("fixed");
        let need = |field: &str, set: bool| -> Result<()> {
            if set {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "lr_policy `{name}` needs `{field}` in the solver file"
                )))
            }
        };
        Ok(match name {
            "fixed" => LrPolicy::Fixed,
            "step" => {
                need("stepsize", p.stepsize.is_some())?;
                if p.stepsize() <= 0 {
                    return Err(Error::Invalid(format!(
                        "lr_policy `step` needs stepsize > 0, got {}",
                        p.stepsize()
                    )));
                }
                LrPolicy::Step {
                    gamma: p.gamma(),
                    stepsize: p.stepsize(),
                }
            }
            "exp" => LrPolicy::Exp { gamma: p.gamma() },
            "inv" => LrPolicy::Inv {
                gamma: p.gamma(),
                power: p.power(),
            },
            "multistep" => {
                if p.stepvalue.windows(2).any(|w| w[1] <= w[0]) {
                    return Err(Error::Invalid(format!(
                        "lr_policy `multistep`: stepvalue must increase, got {:?}",
                        p.stepvalue
                    )));
                }
                LrPolicy::MultiStep {
                    gamma: p.gamma(),
                    stepvalue: p.stepvalue.clone(),
                }
            }
            "poly" => {
                if p.max_iter() <= 0 {
                    return Err(Error::Invalid(
                        "lr_policy `poly` needs max_iter > 0".to_string(),
                    ));
                }
                LrPolicy::Poly {
                    power: p.power(),
                    max_iter: p.max_iter(),
                }
            }
            "sigmoid" => {
                need("stepsize", p.stepsize.is_some())?;
                LrPolicy::Sigmoid {
                    gamma: p.gamma(),
                    stepsize: p.stepsize(),
                }
            }
            other => {
                let known = [
                    "fixed",
                    "step",
                    "exp",
                    "inv",
                    "multistep",
                    "poly",
                    "sigmoid",
                ];
                let hint = crate::spec::nearest(other, known.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err(Error::Invalid(format!(
                    "unknown lr_policy `{other}`{hint}; known: {}",
                    known.join(", ")
                )));
            }
        })
    }

    /// Advances `current_step` for multistep (once per call, as Caffe does) and returns the
    /// rate at `iter`.
    pub fn rate(&self, base_lr: f32, iter: i32, current_step: &mut i32) -> f32 {
        let it = iter as f64;
        let base = base_lr as f64;
        let r = match self {
            LrPolicy::Fixed => base,
            LrPolicy::Step { gamma, stepsize } => {
                *current_step = iter / stepsize;
                base * (*gamma as f64).powi(*current_step)
            }
            LrPolicy::Exp { gamma } => base * (*gamma as f64).powf(it),
            LrPolicy::Inv { gamma, power } => {
                base * (1.0 + *gamma as f64 * it).powf(-(*power as f64))
            }
            LrPolicy::MultiStep { gamma, stepvalue } => {
                if let Some(&sv) = stepvalue.get(*current_step as usize) {
                    if iter >= sv {
                        *current_step += 1;
                    }
                }
                base * (*gamma as f64).powi(*current_step)
            }
            LrPolicy::Poly { power, max_iter } => {
                base * (1.0 - it / *max_iter as f64).max(0.0).powf(*power as f64)
            }
            LrPolicy::Sigmoid { gamma, stepsize } => {
                base / (1.0 + (-(*gamma as f64) * (it - *stepsize as f64)).exp())
            }
        };
        r as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> LrPolicy {
        let p: SolverParameter = crate::spec::from_yaml_str(yaml, "test").unwrap();
        LrPolicy::from_solver(&p).unwrap()
    }

    fn rates(p: &LrPolicy, base: f32, iters: &[i32]) -> Vec<f32> {
        let mut step = 0;
        iters.iter().map(|&i| p.rate(base, i, &mut step)).collect()
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                ((*x as f64) - y).abs() <= 1e-6 * y.abs().max(1e-12),
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn fixed() {
        let p = policy("lr_policy: fixed");
        close(&rates(&p, 0.1, &[0, 7, 1000]), &[0.1, 0.1, 0.1]);
    }

    #[test]
    fn step() {
        let p = policy("lr_policy: step\ngamma: 0.1\nstepsize: 10");
        // floor(iter/10): 0, 0, 1, 1, 3
        close(
            &rates(&p, 0.01, &[0, 9, 10, 19, 35]),
            &[0.01, 0.01, 0.001, 0.001, 0.00001],
        );
    }

    #[test]
    fn exp() {
        let p = policy("lr_policy: exp\ngamma: 0.5");
        close(&rates(&p, 2.0, &[0, 1, 3]), &[2.0, 1.0, 0.25]);
    }

    #[test]
    fn inv() {
        // LeNet's: 0.01 * (1 + 1e-4 * iter)^-0.75
        let p = policy("lr_policy: inv\ngamma: 0.0001\npower: 0.75");
        close(
            &rates(&p, 0.01, &[0, 100, 10000]),
            &[
                0.01,
                0.01 * 1.01f64.powf(-0.75), // 0.0099256...
                0.01 * 2.0f64.powf(-0.75),  // 0.0059460...
            ],
        );
    }

    #[test]
    fn multistep_advances_once_per_call() {
        let p = policy("lr_policy: multistep\ngamma: 0.5\nstepvalue: [2, 4, 5]");
        close(
            &rates(&p, 1.0, &[0, 1, 2, 3, 4, 5, 6, 7]),
            &[1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.125, 0.125],
        );
        let bad: SolverParameter =
            crate::spec::from_yaml_str("lr_policy: multistep\nstepvalue: [5, 3]", "t").unwrap();
        assert!(LrPolicy::from_solver(&bad).is_err());
    }

    #[test]
    fn poly() {
        let p = policy("lr_policy: poly\npower: 2\nmax_iter: 100");
        // (1 - iter/100)^2
        close(&rates(&p, 1.0, &[0, 50, 90]), &[1.0, 0.25, 0.01]);
        let q = policy("lr_policy: poly\npower: 0.5\nmax_iter: 100");
        close(&rates(&q, 0.01, &[75]), &[0.005]);
    }

    #[test]
    fn sigmoid() {
        let p = policy("lr_policy: sigmoid\ngamma: -0.1\nstepsize: 10");
        // 1 / (1 + exp(0.1 * (iter - 10)))
        close(
            &rates(&p, 1.0, &[10, 0, 20]),
            &[
                0.5,
                1.0 / (1.0 + (-1.0f64).exp()),
                1.0 / (1.0 + 1.0f64.exp()),
            ],
        );
    }

    #[test]
    fn unknown_policy_suggests() {
        let p: SolverParameter = crate::spec::from_yaml_str("lr_policy: stepp", "t").unwrap();
        let e = LrPolicy::from_solver(&p).unwrap_err().to_string();
        assert!(e.contains("did you mean `step`"), "{e}");
    }
}
