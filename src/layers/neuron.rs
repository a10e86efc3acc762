//! Element-wise ("neuron") layers: the [`Elementwise`] trait (a formula and its derivative), the
//! one generic [`Neuron`] layer that runs any of them, and the [`Inplace`] helper that lets
//! layers with one bottom and one top share a blob.

use super::{BlobCounts, Layer, TopUse};
use crate::{Blob, Result};
use rayon::prelude::*;

/// Below this many elements, element-wise loops stay on one thread.
pub const PAR_MIN: usize = 1 << 15;

/// Helpers for layers with one bottom and one top of the same shape that may share a blob.
pub struct Inplace;

impl Inplace {
    /// Shapes `top[0]` like `bottom[0]` (nothing to do in place).
    pub fn reshape(bottom: &[&Blob], top: &mut [&mut Blob]) {
        if let Some(b) = bottom.first() {
            top[0].reshape(&b.shape);
        }
    }

    /// The input blob: `bottom[0]`, or `top[0]` in place (before forward overwrites it).
    pub fn input_blob<'a>(bottom: &[&'a Blob], top: &'a [&mut Blob]) -> &'a Blob {
        match bottom.first() {
            Some(b) => b,
            None => &*top[0],
        }
    }

    /// The top's diff in backward: `top[0].diff`, or `bottom[0].diff` in place.
    pub fn top_diff<'a>(top: &[&'a Blob], bottom: &'a [&mut Blob]) -> &'a [f32] {
        match top.first() {
            Some(t) => &t.diff,
            None => &bottom[0].diff,
        }
    }

    /// The input values: `bottom[0].data`, or `top[0].data` in place (before it is overwritten).
    pub fn input<'a>(bottom: &'a [&Blob], top: &'a [&mut Blob]) -> &'a [f32] {
        match bottom.first() {
            Some(b) => &b.data,
            None => &top[0].data,
        }
    }

    /// `y = f(x)` element-wise, in place or not.
    pub fn map(bottom: &[&Blob], top: &mut [&mut Blob], f: impl Fn(f32) -> f32 + Sync) {
        match bottom.first() {
            Some(b) => {
                let (x, y) = (&b.data, &mut top[0].data);
                if x.len() >= PAR_MIN {
                    y.par_iter_mut()
                        .zip(x.par_iter())
                        .for_each(|(y, &x)| *y = f(x));
                } else {
                    y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x));
                }
            }
            None => {
                let y = &mut top[0].data;
                if y.len() >= PAR_MIN {
                    y.par_iter_mut().for_each(|v| *v = f(*v));
                } else {
                    y.iter_mut().for_each(|v| *v = f(*v));
                }
            }
        }
    }

    /// Backward of an element-wise layer: `dx += g(x, y, dy)`, or in place `d := g(y, y, d)`.
    /// Layers that allow in place must give the same answer when `x` is replaced by `y`.
    pub fn backward(
        top: &[&Blob],
        bottom: &mut [&mut Blob],
        g: impl Fn(f32, f32, f32) -> f32 + Sync,
    ) {
        match top.first() {
            Some(t) => {
                let b = &mut *bottom[0];
                let (x, dx) = (&b.data, &mut b.diff);
                let (y, dy) = (&t.data, &t.diff);
                if x.len() >= PAR_MIN {
                    dx.par_iter_mut()
                        .zip(x.par_iter().zip(y.par_iter().zip(dy.par_iter())))
                        .for_each(|(dx, (&x, (&y, &dy)))| *dx += g(x, y, dy));
                } else {
                    for i in 0..x.len() {
                        dx[i] += g(x[i], y[i], dy[i]);
                    }
                }
            }
            None => {
                let b = &mut *bottom[0];
                let (y, d) = (&b.data, &mut b.diff);
                if y.len() >= PAR_MIN {
                    d.par_iter_mut()
                        .zip(y.par_iter())
                        .for_each(|(d, &y)| *d = g(y, y, *d));
                } else {
                    d.iter_mut().zip(y).for_each(|(d, &y)| *d = g(y, y, *d));
                }
            }
        }
    }
}

/// What an element-wise derivative reads, which decides whether the layer may run in place
/// (in place, the input is gone by backward: `x` is replaced by `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derivative {
    /// `df` needs the input `x`: the layer does not run in place.
    FromInput,
    /// `df` needs only the output `y`: the layer runs in place.
    FromOutput,
    /// `df` reads both; with `in_place` it gives the same answer when `x` is replaced by `y`
    /// (ELU with `alpha >= 0`, where `y > 0` exactly when `x > 0`).
    FromBoth { in_place: bool },
    /// Zero wherever it exists: backward adds nothing, and the layer does not run in place
    /// (leaving the diff alone would pass `dy` through as `dx`).
    Zero,
}

/// One element-wise function `y = f(x)` and its derivative; [`Neuron`] makes it a layer.
pub trait Elementwise: Send + Sync + 'static {
    /// The Caffe type string (`"TanH"`).
    const TYPE: &'static str;
    /// `y = f(x)`.
    fn f(&self, x: f32) -> f32;
    /// `dL/dx` from the input `x`, the output `y` and `dL/dy` (read as [`Self::derivative`] says).
    fn df(&self, x: f32, y: f32, dy: f32) -> f32;
    /// What `df` reads.
    fn derivative(&self) -> Derivative;
    /// For the gradient checker: inputs within `range` of `at` sit on a kink.
    fn kink(&self) -> Option<(f32, f32)> {
        None
    }
    /// What backward reads of `y` (in place, `y` is where `x` was): the values whenever `df`
    /// reads `y`, or `x` in place. ReLU overrides it: it needs only the sign.
    fn top_use(&self) -> TopUse {
        match self.derivative() {
            Derivative::FromOutput | Derivative::FromBoth { .. } => TopUse::Values,
            Derivative::FromInput | Derivative::Zero => TopUse::Nothing,
        }
    }
    /// See [`Layer::keeps_sign`].
    fn keeps_sign(&self) -> bool {
        false
    }
}

/// The layer of an [`Elementwise`] function: one bottom, one top of the same shape.
pub struct Neuron<E>(pub E);

/// Boxes an [`Elementwise`] function as a layer (for the `create` functions).
pub fn boxed<E: Elementwise>(e: E) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Neuron(e)))
}

impl<E: Elementwise> Layer for Neuron<E> {
    fn type_name(&self) -> &'static str {
        E::TYPE
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        matches!(
            self.0.derivative(),
            Derivative::FromOutput | Derivative::FromBoth { in_place: true }
        )
    }
    fn backward_reads_top(&self) -> TopUse {
        self.0.top_use()
    }
    fn keeps_sign(&self) -> bool {
        self.0.keeps_sign()
    }
    fn kink(&self) -> Option<(f32, f32)> {
        self.0.kink()
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let e = &self.0;
        Inplace::map(bottom, top, |x| e.f(x));
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if down[0] && self.0.derivative() != Derivative::Zero {
            let e = &self.0;
            Inplace::backward(top, bottom, |x, y, dy| e.df(x, y, dy));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Derivative, Elementwise, Neuron, PAR_MIN};
    use crate::testing::Harness;
    use crate::{layers::Layer, Blob};

    /// `y = 2x + 1`: needs neither side, so both in-place rules can be tried.
    struct Affine(Derivative);

    impl Elementwise for Affine {
        const TYPE: &'static str = "Affine";
        fn f(&self, x: f32) -> f32 {
            2.0 * x + 1.0
        }
        fn df(&self, _: f32, _: f32, dy: f32) -> f32 {
            2.0 * dy
        }
        fn derivative(&self) -> Derivative {
            self.0
        }
    }

    /// Forward and backward out of place (bottom diff pre-filled with 1) and in place; returns
    /// `(y, dx)` of each.
    fn run(d: Derivative, n: usize) -> [Vec<f32>; 4] {
        let x: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
        let dy: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
        let bottom = Blob::from_data(&[n], x.clone()).unwrap();
        let mut h = Harness::with_layer(Box::new(Neuron(Affine(d))), vec![bottom], 1).unwrap();
        h.forward().unwrap();
        h.top[0].diff = dy.clone();
        h.bottom[0].diff = vec![1.0; n];
        h.backward(&[true]).unwrap();
        let mut blob = Blob::from_data(&[n], x).unwrap();
        h.layer.forward(&[], &mut [&mut blob], &mut []).unwrap();
        blob.diff = dy;
        h.layer
            .backward(&[], &[true], &mut [&mut blob], &mut [])
            .unwrap();
        let [t, b] = [h.top.remove(0), h.bottom.remove(0)];
        [t.data, b.diff, blob.data, blob.diff]
    }

    #[test]
    fn generic_neuron_runs_serial_parallel_in_place_and_not() {
        for n in [5, PAR_MIN + 3] {
            let [y, dx, y_in, dx_in] = run(Derivative::FromOutput, n);
            assert_eq!(&y[..5], &[-5.0, -3.0, -1.0, 1.0, 3.0]);
            // Out of place adds into the pre-filled diff (1 + 2 dy); in place replaces it.
            assert_eq!(&dx[..5], &[1.0, 3.0, 5.0, 7.0, 9.0]);
            assert_eq!(y_in, y);
            assert_eq!(&dx_in[..5], &[0.0, 2.0, 4.0, 6.0, 8.0]);
            assert_eq!(dx[n - 1], 1.0 + 2.0 * ((n - 1) % 5) as f32);
        }
    }

    #[test]
    fn in_place_rule_follows_what_the_derivative_reads() {
        let allows = |d| Neuron(Affine(d)).allows_inplace();
        assert!(allows(Derivative::FromOutput));
        assert!(allows(Derivative::FromBoth { in_place: true }));
        assert!(!allows(Derivative::FromBoth { in_place: false }));
        assert!(!allows(Derivative::FromInput));
        assert!(!allows(Derivative::Zero));
        // A zero derivative adds nothing.
        let [_, dx, _, _] = run(Derivative::Zero, 4);
        assert_eq!(dx, vec![1.0; 4]);
    }
}
