//! Divergence: when a loss, a gradient or an update is NaN/Inf, training stops with an error
//! that names the layer where the first bad value appears and the last good snapshot.

use super::Solver;
use crate::{Error, Result};

impl Solver {
    /// Refuses to write non-finite weights (`data - diff`): the last good values stay.
    pub(super) fn check_update(&self, rate: f32) -> Result<()> {
        for (i, p) in self.net.params().iter().enumerate() {
            if p.data
                .iter()
                .zip(&p.diff)
                .any(|(&w, &d)| !(w - d).is_finite())
            {
                let owner = self
                    .net
                    .param_info()
                    .get(i)
                    .map(|pi| format!("param {} of layer `{}`", pi.index, pi.layer))
                    .unwrap_or_else(|| format!("param blob {i}"));
                return Err(Error::NotFinite(format!(
                    "training diverged at iteration {}: the update of {owner} is NaN or Inf \
                     (lr = {rate:e}); lower base_lr or set clip_gradients. {}",
                    self.iter,
                    self.kept_snapshot_text()
                )));
            }
        }
        Ok(())
    }

    fn kept_snapshot_text(&self) -> String {
        match &self.last_snapshot {
            Some((i, p)) => format!(
                "The last good snapshot (iteration {i}) is kept: {}",
                p.display()
            ),
            None => "No snapshot was written (none was due yet).".into(),
        }
    }

    /// Where the first NaN/Inf is: the first layer (forward order) holding a bad parameter or
    /// producing a bad top; failing that, the first layer in backward order producing a bad
    /// parameter or bottom gradient.
    fn locate_non_finite(&self) -> Option<String> {
        let bad = |v: &[f32]| v.iter().any(|x| !x.is_finite());
        let net = &self.net;
        for (li, l) in net.layers().iter().enumerate() {
            for (k, p) in net.layer_params(li).into_iter().enumerate() {
                if bad(&p.data) {
                    return Some(format!(
                        "param {k} of layer `{}` ({}) holds NaN/Inf",
                        l.name, l.ty
                    ));
                }
            }
            for &t in &l.top {
                if bad(&net.blob_at(t).data) {
                    return Some(format!(
                        "layer `{}` ({}) produced NaN/Inf in its top `{}`",
                        l.name,
                        l.ty,
                        net.blob_name(t)
                    ));
                }
            }
        }
        for (li, l) in net.layers().iter().enumerate().rev() {
            if !l.need_backward {
                continue;
            }
            for (k, p) in net.layer_params(li).into_iter().enumerate() {
                if bad(&p.diff) {
                    return Some(format!(
                        "layer `{}` ({}) produced a NaN/Inf gradient for its param {k}",
                        l.name, l.ty
                    ));
                }
            }
            for (k, &b) in l.bottom.iter().enumerate() {
                if l.bottom_need_backward.get(k).copied().unwrap_or(false)
                    && bad(&net.blob_at(b).diff)
                {
                    return Some(format!(
                        "layer `{}` ({}) produced a NaN/Inf gradient for its bottom `{}`",
                        l.name,
                        l.ty,
                        net.blob_name(b)
                    ));
                }
            }
        }
        None
    }

    fn diverged(&self, what: &str, default_place: &str) -> Error {
        let place = self
            .locate_non_finite()
            .unwrap_or_else(|| default_place.to_string());
        Error::NotFinite(format!(
            "training diverged at iteration {}: {what}; {place}. Lower base_lr (now {:e}), set \
             clip_gradients, or check the data. {}",
            self.iter,
            self.param.base_lr(),
            self.kept_snapshot_text()
        ))
    }

    /// The error for a non-finite loss after a forward pass.
    pub(super) fn diverged_forward(&self, loss: f32) -> Error {
        self.diverged(
            &format!("loss = {loss}"),
            "no layer output is NaN/Inf (the loss sum overflowed)",
        )
    }

    /// Checks the accumulated parameter gradients.
    pub(super) fn check_gradients(&self) -> Result<()> {
        if self
            .net
            .params()
            .iter()
            .any(|p| p.diff.iter().any(|x| !x.is_finite()))
        {
            return Err(self.diverged(
                "a parameter gradient is NaN/Inf",
                "a parameter gradient is NaN/Inf",
            ));
        }
        Ok(())
    }
}
