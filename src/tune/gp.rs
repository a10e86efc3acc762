//! A Gaussian process on the unit cube: Matérn 5/2 kernel with one length scale per dimension
//! (ARD), signal variance and noise variance fitted by maximizing the log marginal likelihood,
//! as Spearmint does (there by slice sampling; here by a multi-start pattern search in log
//! space, which is deterministic for a given seed). Observations are standardized.

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use rand::Rng;

/// The kernel's hyperparameters, in log space.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// log length scale per dimension.
    pub log_ls: Vec<f64>,
    /// log signal variance.
    pub log_sf2: f64,
    /// log noise variance.
    pub log_sn2: f64,
}

/// Box bounds of the hyperparameter search (log space), for inputs in [0, 1] and standardized
/// outputs.
const LS: (f64, f64) = (-4.0, 2.3); // 0.018 .. 10
const SF2: (f64, f64) = (-3.0, 3.0);
const SN2: (f64, f64) = (-13.8, -0.7); // 1e-6 .. 0.5

impl Hyper {
    fn to_vec(&self) -> Vec<f64> {
        let mut v = self.log_ls.clone();
        v.push(self.log_sf2);
        v.push(self.log_sn2);
        v
    }

    fn from_vec(v: &[f64]) -> Hyper {
        let d = v.len() - 2;
        Hyper {
            log_ls: v[..d].to_vec(),
            log_sf2: v[d],
            log_sn2: v[d + 1],
        }
    }

    fn bounds(d: usize, i: usize) -> (f64, f64) {
        if i < d {
            LS
        } else if i == d {
            SF2
        } else {
            SN2
        }
    }
}

/// Matérn 5/2 correlation at scaled distance `r`.
pub fn matern52(r: f64) -> f64 {
    let s = 5f64.sqrt() * r;
    (1.0 + s + s * s / 3.0) * (-s).exp()
}

fn kernel(h: &Hyper, a: &[f64], b: &[f64]) -> f64 {
    let r2: f64 = a
        .iter()
        .zip(b)
        .zip(&h.log_ls)
        .map(|((x, y), l)| ((x - y) / l.exp()).powi(2))
        .sum();
    h.log_sf2.exp() * matern52(r2.sqrt())
}

fn gram(h: &Hyper, x: &[Vec<f64>]) -> DMatrix<f64> {
    let n = x.len();
    let noise = h.log_sn2.exp() + 1e-9;
    DMatrix::from_fn(n, n, |i, j| {
        kernel(h, &x[i], &x[j]) + if i == j { noise } else { 0.0 }
    })
}

/// A fitted Gaussian process.
pub struct Gp {
    x: Vec<Vec<f64>>,
    hyper: Hyper,
    chol: Cholesky<f64, Dyn>,
    alpha: DVector<f64>,
    mean: f64,
    scale: f64,
}

fn standardize(y: &[f64]) -> (Vec<f64>, f64, f64) {
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let scale = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
    (y.iter().map(|v| (v - mean) / scale).collect(), mean, scale)
}

/// Negative log marginal likelihood of standardized `y` (`None` if the Gram matrix is not
/// positive definite).
fn nll(h: &Hyper, x: &[Vec<f64>], y: &[f64]) -> Option<f64> {
    let chol = Cholesky::new(gram(h, x))?;
    let yv = DVector::from_column_slice(y);
    let alpha = chol.solve(&yv);
    let logdet: f64 = chol.l_dirty().diagonal().iter().map(|d| d.ln()).sum();
    let v =
        0.5 * yv.dot(&alpha) + logdet + 0.5 * y.len() as f64 * (2.0 * std::f64::consts::PI).ln();
    v.is_finite().then_some(v)
}

impl Gp {
    /// Fits the hyperparameters to `(x, y)` by marginal likelihood, then conditions on them.
    /// `x` must not be empty.
    pub fn fit(x: &[Vec<f64>], y: &[f64], rng: &mut impl Rng) -> Option<Gp> {
        let hyper = fit_hyper(x, y, rng)?;
        Gp::new(x, y, hyper)
    }

    /// Conditions a GP with the given hyperparameters on `(x, y)`.
    pub fn new(x: &[Vec<f64>], y: &[f64], hyper: Hyper) -> Option<Gp> {
        let (ys, mean, scale) = standardize(y);
        let chol = Cholesky::new(gram(&hyper, x))?;
        let alpha = chol.solve(&DVector::from_vec(ys));
        Some(Gp {
            x: x.to_vec(),
            hyper,
            chol,
            alpha,
            mean,
            scale,
        })
    }

    /// The fitted hyperparameters.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Posterior mean and standard deviation of the latent function at `p`, in `y`'s units.
    pub fn predict(&self, p: &[f64]) -> (f64, f64) {
        let k = DVector::from_iterator(
            self.x.len(),
            self.x.iter().map(|x| kernel(&self.hyper, x, p)),
        );
        let mu = k.dot(&self.alpha);
        let v = self.chol.l_dirty().solve_lower_triangular(&k);
        let var = match v {
            Some(v) => self.hyper.log_sf2.exp() - v.dot(&v),
            None => self.hyper.log_sf2.exp(),
        };
        (
            self.mean + self.scale * mu,
            self.scale * var.max(1e-12).sqrt(),
        )
    }

    /// Expected improvement below `best` (minimization) at `p`.
    pub fn expected_improvement(&self, p: &[f64], best: f64) -> f64 {
        let (mu, sd) = self.predict(p);
        expected_improvement(mu, sd, best)
    }
}

/// Expected improvement of a normal(`mu`, `sd`) below `best`.
pub fn expected_improvement(mu: f64, sd: f64, best: f64) -> f64 {
    if sd <= 0.0 {
        return (best - mu).max(0.0);
    }
    let z = (best - mu) / sd;
    let cdf = 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2);
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    ((best - mu) * cdf + sd * pdf).max(0.0)
}

/// Maximizes the marginal likelihood: the best of a default and 30 random starts, then a
/// coordinate pattern search (step halved when no move helps).
fn fit_hyper(x: &[Vec<f64>], y: &[f64], rng: &mut impl Rng) -> Option<Hyper> {
    let d = x.first()?.len();
    let (ys, _, _) = standardize(y);
    let f = |v: &[f64]| nll(&Hyper::from_vec(v), x, &ys).unwrap_or(f64::INFINITY);
    let mut best = Hyper {
        log_ls: vec![(0.3f64).ln(); d],
        log_sf2: 0.0,
        log_sn2: (1e-3f64).ln(),
    }
    .to_vec();
    let mut best_f = f(&best);
    for _ in 0..30 {
        let v: Vec<f64> = (0..d + 2)
            .map(|i| {
                let (lo, hi) = Hyper::bounds(d, i);
                rng.gen_range(lo..hi)
            })
            .collect();
        let fv = f(&v);
        if fv < best_f {
            best = v;
            best_f = fv;
        }
    }
    let mut step = 1.0;
    let mut evals = 0;
    while step > 0.02 && evals < 400 {
        let mut moved = false;
        for i in 0..d + 2 {
            for dir in [1.0, -1.0] {
                let (lo, hi) = Hyper::bounds(d, i);
                let mut v = best.clone();
                v[i] = (v[i] + dir * step).clamp(lo, hi);
                if v[i] == best[i] {
                    continue;
                }
                evals += 1;
                let fv = f(&v);
                if fv < best_f {
                    best = v;
                    best_f = fv;
                    moved = true;
                }
            }
        }
        if !moved {
            step *= 0.5;
        }
    }
    best_f.is_finite().then(|| Hyper::from_vec(&best))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn matern_and_expected_improvement_by_hand() {
        assert_eq!(matern52(0.0), 1.0);
        // r = 1: (1 + sqrt5 + 5/3) * exp(-sqrt5) = 0.523994...
        assert!((matern52(1.0) - 0.523_994_4).abs() < 1e-6);
        // mu = best: EI = sd * phi(0) = 0.398942 * sd.
        assert!((expected_improvement(1.0, 2.0, 1.0) - 0.797_884_6).abs() < 1e-6);
        // z = 1: (1) * Phi(1) + 1 * phi(1) = 0.841345 + 0.241971 = 1.083316.
        assert!((expected_improvement(0.0, 1.0, 1.0) - 1.083_315_9).abs() < 1e-6);
    }

    #[test]
    fn interpolates_a_smooth_function() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let x: Vec<Vec<f64>> = (0..12).map(|i| vec![i as f64 / 11.0]).collect();
        let y: Vec<f64> = x.iter().map(|p| (6.0 * p[0]).sin()).collect();
        let gp = Gp::fit(&x, &y, &mut rng).unwrap();
        let (mu, sd) = gp.predict(&[0.5]);
        assert!((mu - 3f64.sin()).abs() < 0.02, "mu {mu}");
        assert!(sd < 0.05, "sd {sd}");
        // At an observed point the posterior sits on the data.
        let (mu, _) = gp.predict(&x[3]);
        assert!((mu - y[3]).abs() < 0.01);
    }
}
