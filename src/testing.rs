//! The shared numeric gradient checker and the layer test harness every test (and
//! `crema check --gradients`) uses.
//!
//! Rule (Caffe's): `|analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1)`, central
//! differences with `step`, inputs on a declared kink skipped. The objective is a fixed random
//! weighting of every top element, so one backward pass yields every analytic gradient. Diffs
//! are pre-filled with noise before backward, so a layer that overwrites instead of adding fails.
//!
//! Points where the function is not differentiable inside the step (a max whose winner changes
//! between `x - step` and `x + step`, a ReLU input crossing 0 at net level) are found without
//! help from the layer: there the two one-sided differences `(f(x+h) - f(x)) / h` and
//! `(f(x) - f(x-h)) / h` disagree, and a correct analytic value is the slope of one side. An
//! element whose central difference fails is measured again with a quarter and a sixteenth of
//! the step (fewer changes of slope fit inside); if those fail too, it is skipped (counted in
//! [`GradientReport::skipped`]) when at the smallest step its analytic value lies between the
//! two one-sided differences (within the tolerance). Where the function is smooth the
//! one-sided differences agree to `O(step)`, so a wrong gradient still fails.

use crate::layers::{self, Layer, SetupCtx};
use crate::proto::LayerParameter;
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// Settings of the numeric gradient check.
#[derive(Debug, Clone)]
pub struct GradientChecker {
    /// Finite-difference step (Caffe: 1e-2).
    pub step: f32,
    /// Relative tolerance (Caffe: 1e-3).
    pub threshold: f32,
    /// Seed for the objective weights, the diff noise and the layer's own randomness.
    pub seed: u64,
    /// Check at most this many elements of each blob (randomly chosen); `None` checks all.
    pub max_per_blob: Option<usize>,
}

impl Default for GradientChecker {
    fn default() -> Self {
        GradientChecker {
            step: 1e-2,
            threshold: 1e-3,
            seed: 1701,
            max_per_blob: None,
        }
    }
}

/// Outcome of a gradient check.
#[derive(Debug, Clone, Default)]
pub struct GradientReport {
    /// Largest `|a - n| / max(|a|, |n|, 1)` seen.
    pub max_rel_error: f32,
    /// Elements compared.
    pub checked: usize,
    /// Elements skipped because the step straddles a point where the slope changes (see the
    /// module documentation); they count neither in `checked` nor in `max_rel_error`.
    pub skipped: usize,
    /// The first few failures, described.
    pub failures: Vec<String>,
}

impl GradientReport {
    /// True when no element failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

fn gaussian_fill(v: &mut [f32], rng: &mut StdRng) {
    v.iter_mut().for_each(|x| *x = StandardNormal.sample(rng));
}

fn as_refs(v: &[Blob]) -> Vec<&Blob> {
    v.iter().collect()
}

fn as_muts(v: &mut [Blob]) -> Vec<&mut Blob> {
    v.iter_mut().collect()
}

impl GradientChecker {
    /// Checks `layer` at the given bottoms and params. `check_bottom[i]` says which bottoms to
    /// differentiate (index bottoms such as labels must be false).
    pub fn check(
        &self,
        layer: &mut dyn Layer,
        bottom: &mut [Blob],
        params: &mut [Blob],
        num_tops: usize,
        check_bottom: &[bool],
    ) -> Result<GradientReport> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut top: Vec<Blob> = (0..num_tops).map(|_| Blob::default()).collect();
        // The parameter values of the function under test; `run` restores them before each
        // forward (a layer may update its blobs, BatchNorm its statistics), and the parameter
        // loop perturbs this copy.
        let mut saved: Vec<Blob> = params.to_vec();
        let seed = self.seed;
        let run = |layer: &mut dyn Layer,
                   bottom: &[Blob],
                   saved: &[Blob],
                   params: &mut [Blob],
                   top: &mut [Blob]|
         -> Result<()> {
            for (p, s) in params.iter_mut().zip(saved) {
                p.data.copy_from_slice(&s.data);
            }
            layer.reseed(seed);
            layer.reshape(&as_refs(bottom), &mut as_muts(top))?;
            layer.forward(&as_refs(bottom), &mut as_muts(top), &mut as_muts(params))
        };
        run(layer, bottom, &saved, params, &mut top)?;
        // Objective weights, written into the top diffs.
        let weights: Vec<Vec<f32>> = top
            .iter()
            .map(|t| {
                let mut w = vec![0.0; t.count()];
                gaussian_fill(&mut w, &mut rng);
                w
            })
            .collect();
        for (t, w) in top.iter_mut().zip(&weights) {
            t.diff.copy_from_slice(w);
        }
        let base: Vec<Vec<f32>> = top.iter().map(|t| t.data.clone()).collect();
        let down: Vec<bool> = (0..bottom.len())
            .map(|i| check_bottom.get(i).copied().unwrap_or(false))
            .collect();
        let (analytic_bottom, analytic_params) =
            backward_with_noise(layer, &top, &down, bottom, params, &mut rng)?;

        // Change of the objective from its value at the unperturbed point.
        let objective = |top: &[Blob]| -> f64 {
            let mut s = 0.0f64;
            for ((t, b), w) in top.iter().zip(&base).zip(&weights) {
                for ((&v, &v0), &w) in t.data.iter().zip(b).zip(w) {
                    if v != v0 {
                        s += w as f64 * (v as f64 - v0 as f64);
                    }
                }
            }
            s
        };
        let mut report = GradientReport::default();
        let kink = layer.kink();
        // The elements to perturb: bottoms off a declared kink, then params.
        let mut work: Vec<(Perturbed, usize, f32)> = Vec::new();
        for bi in (0..bottom.len()).filter(|&bi| down[bi]) {
            for i in self.pick(bottom[bi].count(), &mut rng) {
                let x = bottom[bi].data[i];
                if !kink.is_some_and(|(at, range)| (x - at).abs() < range) {
                    work.push((Perturbed::Bottom(bi), i, analytic_bottom[bi][i]));
                }
            }
        }
        for pi in (0..params.len()).filter(|_| !layer.frozen_params()) {
            for i in self.pick(params[pi].count(), &mut rng) {
                work.push((Perturbed::Param(pi), i, analytic_params[pi][i]));
            }
        }
        for (which, i, analytic) in work {
            let x = *which.value(i, bottom, &mut saved);
            self.judge(&mut report, &which.describe(i), analytic, |step| {
                *which.value(i, bottom, &mut saved) = x + step;
                run(layer, bottom, &saved, params, &mut top)?;
                let up = objective(&top);
                *which.value(i, bottom, &mut saved) = x - step;
                run(layer, bottom, &saved, params, &mut top)?;
                *which.value(i, bottom, &mut saved) = x;
                Ok((up, -objective(&top)))
            })?;
        }
        for (p, s) in params.iter_mut().zip(&saved) {
            p.data.copy_from_slice(&s.data);
        }
        Ok(report)
    }

    /// The elements of a blob of `n` values to check: all, or `max_per_blob` random ones.
    pub fn pick(&self, n: usize, rng: &mut StdRng) -> Vec<usize> {
        match self.max_per_blob {
            Some(k) if k < n => (0..k).map(|_| rng.gen_range(0..n)).collect(),
            _ => (0..n).collect(),
        }
    }

    /// Judges one element against its `analytic` gradient. `differences(step)` gives the
    /// objective's change over `+step` (`f(x + step) - f(x)`) and over `-step`
    /// (`f(x) - f(x - step)`). The element passes when the central difference agrees within
    /// the threshold at `self.step` or, failing that, at a quarter or a sixteenth of it (fewer
    /// changes of slope fit in a smaller step); it is skipped when at the smallest step the two
    /// one-sided differences enclose `analytic` (see the module documentation); otherwise it
    /// fails with the numbers of the first step.
    pub fn judge(
        &self,
        report: &mut GradientReport,
        what: &str,
        analytic: f32,
        mut differences: impl FnMut(f32) -> Result<(f64, f64)>,
    ) -> Result<()> {
        let mut first = None;
        let mut last = (0.0, 0.0, 1.0);
        for k in 0..3 {
            let step = self.step / 4f32.powi(k);
            let (up, down) = differences(step)?;
            let h = step as f64;
            let numeric = ((up + down) / (2.0 * h)) as f32;
            let err = rel_error(analytic, numeric);
            if err <= self.threshold {
                report.checked += 1;
                report.max_rel_error = report.max_rel_error.max(err);
                return Ok(());
            }
            first.get_or_insert((numeric, err));
            last = (up, down, h);
        }
        // At the smallest step, where curvature widens the gap between the one-sided
        // differences least.
        let (up, down, h) = last;
        let (right, left) = ((up / h) as f32, (down / h) as f32);
        let (lo, hi) = (right.min(left), right.max(left));
        let tol = self.threshold * analytic.abs().max(hi.abs()).max(lo.abs()).max(1.0);
        if analytic >= lo - tol && analytic <= hi + tol {
            report.skipped += 1;
            return Ok(());
        }
        let (numeric, err) = first.unwrap_or((f32::NAN, f32::NAN));
        report.checked += 1;
        report.max_rel_error = if err.is_nan() {
            f32::INFINITY
        } else {
            report.max_rel_error.max(err)
        };
        if report.failures.len() < 8 {
            report
                .failures
                .push(format!("{what}: analytic {analytic} vs numeric {numeric}"));
        }
        Ok(())
    }
}

/// Which blob of a layer check an element belongs to.
#[derive(Clone, Copy)]
enum Perturbed {
    Bottom(usize),
    Param(usize),
}

impl Perturbed {
    /// Element `i` of this blob (params are perturbed in the copy the check restores).
    fn value<'a>(self, i: usize, bottom: &'a mut [Blob], saved: &'a mut [Blob]) -> &'a mut f32 {
        match self {
            Perturbed::Bottom(b) => &mut bottom[b].data[i],
            Perturbed::Param(p) => &mut saved[p].data[i],
        }
    }

    fn describe(self, i: usize) -> String {
        match self {
            Perturbed::Bottom(b) => format!("bottom {b}[{i}]"),
            Perturbed::Param(p) => format!("param {p}[{i}]"),
        }
    }
}

/// `|a - n| / max(|a|, |n|, 1)`.
fn rel_error(a: f32, n: f32) -> f32 {
    (a - n).abs() / a.abs().max(n.abs()).max(1.0)
}

/// One gradient per blob.
type Gradients = Vec<Vec<f32>>;

/// Runs `layer`'s backward with every bottom and param diff pre-filled with noise (the `+=`
/// contract) and returns the gradients it added: `(per bottom, per param)`.
fn backward_with_noise(
    layer: &mut dyn Layer,
    top: &[Blob],
    down: &[bool],
    bottom: &mut [Blob],
    params: &mut [Blob],
    rng: &mut StdRng,
) -> Result<(Gradients, Gradients)> {
    let mut noise = |blobs: &mut [Blob]| -> Vec<Vec<f32>> {
        blobs
            .iter_mut()
            .map(|b| {
                gaussian_fill(&mut b.diff, rng);
                b.diff.clone()
            })
            .collect()
    };
    let bottom_noise = noise(bottom);
    let param_noise = noise(params);
    layer.backward(
        &as_refs(top),
        down,
        &mut as_muts(bottom),
        &mut as_muts(params),
    )?;
    let added = |blobs: &[Blob], noise: &[Vec<f32>]| -> Vec<Vec<f32>> {
        blobs
            .iter()
            .zip(noise)
            .map(|(b, n)| b.diff.iter().zip(n).map(|(d, n)| d - n).collect())
            .collect()
    };
    Ok((added(bottom, &bottom_noise), added(params, &param_noise)))
}

/// Parses one layer's YAML (the fields of a `layer:` list entry) into its parameters.
pub fn layer_param_from_yaml(yaml: &str) -> Result<LayerParameter> {
    let mut p: LayerParameter = crate::spec::from_yaml_str(yaml, "<test layer>")?;
    if p.name.is_none() {
        p.name = Some("test".into());
    }
    Ok(p)
}

/// Creates a layer from YAML; panics with the error (tests only).
pub fn layer_from_yaml(yaml: &str) -> Box<dyn Layer> {
    let p = layer_param_from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    layers::create(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// A layer with its own bottoms, tops and parameters, for tests and the net-level checker.
pub struct Harness {
    /// The layer under test.
    pub layer: Box<dyn Layer>,
    /// Its inputs.
    pub bottom: Vec<Blob>,
    /// Its outputs.
    pub top: Vec<Blob>,
    /// Its learnable blobs as created by `setup`.
    pub params: Vec<Blob>,
}

impl Harness {
    /// Builds the layer from YAML and sets it up on `bottom` (seeded, so fillers repeat).
    pub fn new(yaml: &str, bottom: Vec<Blob>) -> Result<Self> {
        let p = layer_param_from_yaml(yaml)?;
        let layer = layers::create(&p)?;
        let counts = layer.blob_counts();
        let tops = if !p.top.is_empty() {
            p.top.len()
        } else {
            counts.exact_top.or(counts.min_top).unwrap_or(1)
        };
        Self::with_layer(layer, bottom, tops)
    }

    /// Sets up an already-built layer on `bottom` with `tops` outputs.
    pub fn with_layer(mut layer: Box<dyn Layer>, bottom: Vec<Blob>, tops: usize) -> Result<Self> {
        let ty = layer.type_name();
        layer.blob_counts().check(ty, bottom.len(), tops)?;
        let mut rng = StdRng::seed_from_u64(1701);
        let params = layer.setup(&as_refs(&bottom), &mut SetupCtx { rng: &mut rng })?;
        let mut top: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
        layer.reshape(&as_refs(&bottom), &mut as_muts(&mut top))?;
        Ok(Harness {
            layer,
            bottom,
            top,
            params,
        })
    }

    /// Reshape and forward.
    pub fn forward(&mut self) -> Result<()> {
        self.layer
            .reshape(&as_refs(&self.bottom), &mut as_muts(&mut self.top))?;
        self.layer.forward(
            &as_refs(&self.bottom),
            &mut as_muts(&mut self.top),
            &mut as_muts(&mut self.params),
        )
    }

    /// Backward with the given `propagate_down` (tops' diffs must be set by the caller).
    pub fn backward(&mut self, down: &[bool]) -> Result<()> {
        self.layer.backward(
            &as_refs(&self.top),
            down,
            &mut as_muts(&mut self.bottom),
            &mut as_muts(&mut self.params),
        )
    }

    /// Which bottoms are real-valued (index bottoms are not differentiated).
    pub fn checkable_bottoms(&self) -> Vec<bool> {
        let shapes: Vec<Vec<usize>> = self.bottom.iter().map(|b| b.shape.clone()).collect();
        (0..self.bottom.len())
            .map(|i| {
                self.layer.index_bound(i, &shapes).is_none() && self.layer.allow_force_backward(i)
            })
            .collect()
    }

    /// Runs the gradient checker on every real-valued bottom and every parameter.
    pub fn check_gradients(&mut self, checker: &GradientChecker) -> Result<GradientReport> {
        let down = self.checkable_bottoms();
        checker.check(
            &mut *self.layer,
            &mut self.bottom,
            &mut self.params,
            self.top.len(),
            &down,
        )
    }
}

/// Random bottoms of the given shapes for `layer`: Gaussian (std 1), or valid indices where the
/// layer says a bottom holds indices.
pub fn random_bottoms(layer: &dyn Layer, shapes: &[&[usize]], seed: u64) -> Vec<Blob> {
    let mut rng = StdRng::seed_from_u64(seed);
    let owned: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut b = Blob::new(s);
            match layer.index_bound(i, &owned) {
                Some(n) => b
                    .data
                    .iter_mut()
                    .for_each(|v| *v = rng.gen_range(0..n.max(1)) as f32),
                None => gaussian_fill(&mut b.data, &mut rng),
            }
            b
        })
        .collect()
}

/// Builds the layer from YAML on random bottoms of `shapes` and asserts that its gradients pass
/// the checker (tests only: panics with the failures).
pub fn check_layer_from(yaml: &str, shapes: &[&[usize]]) -> GradientReport {
    check_layer_with(yaml, shapes, &GradientChecker::default())
}

/// As [`check_layer_from`] with a custom checker.
pub fn check_layer_with(
    yaml: &str,
    shapes: &[&[usize]],
    checker: &GradientChecker,
) -> GradientReport {
    let probe = layer_from_yaml(yaml);
    let bottoms = random_bottoms(&*probe, shapes, 42);
    let mut h = Harness::new(yaml, bottoms).unwrap_or_else(|e| panic!("{e}"));
    let report = h.check_gradients(checker).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.ok(),
        "gradient check failed for `{yaml}` (max rel error {}):\n{}",
        report.max_rel_error,
        report.failures.join("\n")
    );
    assert!(
        report.checked > 0,
        "gradient check compared nothing for `{yaml}`"
    );
    report
}

/// Runs one forward pass of `layer` on the given `(shape, data)` inputs and returns the tops.
pub fn run_forward(layer: &mut dyn Layer, inputs: &[(&[usize], &[f32])]) -> Vec<Blob> {
    let bottom: Vec<Blob> = inputs
        .iter()
        .map(|(s, d)| Blob::from_data(s, d.to_vec()).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let counts = layer.blob_counts();
    let tops = counts.exact_top.or(counts.min_top).unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(1701);
    let mut params = layer
        .setup(&as_refs(&bottom), &mut SetupCtx { rng: &mut rng })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut top: Vec<Blob> = (0..tops).map(|_| Blob::default()).collect();
    layer
        .reshape(&as_refs(&bottom), &mut as_muts(&mut top))
        .unwrap_or_else(|e| panic!("{e}"));
    layer
        .forward(
            &as_refs(&bottom),
            &mut as_muts(&mut top),
            &mut as_muts(&mut params),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    top
}

/// Asserts two slices agree element-wise within `tol` (absolute).
pub fn assert_close(actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len(), "length differs");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol,
            "element {i}: {a} vs expected {e} (tol {tol})"
        );
    }
}

/// Error for tests that expect one: the message text.
pub fn err_text<T>(r: Result<T, Error>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.chain_text(),
    }
}

/// For a layer that allows in place: runs it out of place and in place (one blob, empty bottom
/// in forward, empty top in backward) on the same random input and top diff, and asserts the
/// outputs, the input gradients and the parameter gradients agree (tests only: panics).
pub fn assert_inplace_matches(yaml: &str, shape: &[usize]) {
    let probe = layer_from_yaml(yaml);
    assert!(probe.allows_inplace(), "`{yaml}` does not allow in place");
    let x = random_bottoms(&*probe, &[shape], 7).remove(0);
    let mut rng = StdRng::seed_from_u64(11);
    let mut dy = vec![0.0; x.count()];
    gaussian_fill(&mut dy, &mut rng);
    let mut h = Harness::new(yaml, vec![x.clone()]).unwrap_or_else(|e| panic!("{e}"));
    h.forward().unwrap_or_else(|e| panic!("{e}"));
    h.top[0].diff.copy_from_slice(&dy);
    h.backward(&[true]).unwrap_or_else(|e| panic!("{e}"));

    let mut g = Harness::new(yaml, vec![x.clone()]).unwrap_or_else(|e| panic!("{e}"));
    let mut blob = x;
    let mut params = g.params.clone();
    let l = &mut g.layer;
    let mut run = || -> Result<()> {
        l.reshape(&[], &mut [&mut blob])?;
        l.forward(&[], &mut [&mut blob], &mut as_muts(&mut params))?;
        assert_close(&blob.data, &h.top[0].data, 1e-6);
        blob.diff.copy_from_slice(&dy);
        l.backward(&[], &[true], &mut [&mut blob], &mut as_muts(&mut params))?;
        Ok(())
    };
    run().unwrap_or_else(|e| panic!("{e}"));
    assert_close(&blob.diff, &h.bottom[0].diff, 1e-5);
    for (p, q) in params.iter().zip(&h.params) {
        assert_close(&p.diff, &q.diff, 1e-5);
    }
}

/// A file in `../shared/data` (the real third-party files the tests use); panics when missing.
pub fn shared_data(rel: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: the tests need ../shared/data",
        p.display()
    );
    p
}

/// An `h x w` image with `c` channels whose pixel `(y, x, channel)` is `f(y, x, channel)`.
pub fn image_from_fn(
    h: usize,
    w: usize,
    c: usize,
    f: impl Fn(usize, usize, usize) -> u8,
) -> crate::data::photo::Image {
    let d = (0..h * w * c)
        .map(|i| f(i / (w * c), i / c % w, i % c))
        .collect();
    crate::data::photo::Image::new(h, w, c, d).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `differences` for a function with slope `left` below x and `right` above it, plus a
    /// curvature term, at any step.
    fn piecewise(left: f64, right: f64, curve: f64) -> impl FnMut(f32) -> Result<(f64, f64)> {
        move |s| {
            let h = s as f64;
            Ok((right * h + curve * h * h, left * h - curve * h * h))
        }
    }

    fn judged(analytic: f32, left: f64, right: f64, curve: f64) -> GradientReport {
        let mut r = GradientReport::default();
        GradientChecker::default()
            .judge(&mut r, "x", analytic, piecewise(left, right, curve))
            .unwrap();
        r
    }

    #[test]
    fn a_kink_inside_the_step_is_skipped_but_a_wrong_slope_fails() {
        // Smooth and right; smooth and wrong by 2%: passes, fails.
        let r = judged(0.5, 0.5, 0.5, 3.0);
        assert!(r.ok() && r.checked == 1 && r.skipped == 0);
        let r = judged(0.51, 0.5, 0.5, 3.0);
        assert!(!r.ok() && (r.max_rel_error - 0.01).abs() < 1e-4, "{r:?}");
        // A change of winner at x: slope 1 on the right, 0.2 on the left. Either side's slope
        // is a correct answer; a value outside both is not.
        for a in [1.0, 0.2] {
            let r = judged(a, 0.2, 1.0, 0.0);
            assert!(r.ok() && r.skipped == 1 && r.checked == 0, "{r:?}");
        }
        let r = judged(1.5, 0.2, 1.0, 0.0);
        assert!(!r.ok() && r.checked == 1, "{r:?}");
    }
}
