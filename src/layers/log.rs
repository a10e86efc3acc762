//! `Log`: `y = log_base(shift + scale x)` (`base: -1` means e). Not in place: the derivative
//! needs `x`.

use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Log` layer.
pub struct Log {
    inv_ln_base: f32,
    scale: f32,
    shift: f32,
}

/// Creates a `Log` from `log_param`; the base must be positive (and not 1) or -1.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let lp = p.log_param.unwrap_or_default();
    let base = lp.base();
    crate::ensure!(
        base == -1.0 || (base > 0.0 && base != 1.0),
        "log_param.base must be positive and not 1, or -1 (meaning e), got {base}"
    );
    let ln_base = if base == -1.0 { 1.0 } else { base.ln() };
    Ok(Box::new(Log {
        inv_ln_base: 1.0 / ln_base,
        scale: lp.scale(),
        shift: lp.shift(),
    }))
}

impl Layer for Log {
    fn type_name(&self) -> &'static str {
        "Log"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
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
        let (k, a, b) = (self.inv_ln_base, self.scale, self.shift);
        Inplace::map(bottom, top, |x| (b + a * x).ln() * k);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if down[0] {
            let (k, a, b) = (self.inv_ln_base, self.scale, self.shift);
            Inplace::backward(top, bottom, |x, _, dy| dy * a * k / (b + a * x));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn log_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Log");
        let y = run_forward(&mut *l, &[(&[3], &[1.0, std::f32::consts::E, 0.5])]);
        assert_close(&y[0].data, &[0.0, 1.0, -std::f32::consts::LN_2], 1e-6);
        let mut l = layer_from_yaml("type: Log\nlog_param: { base: 2, scale: 2, shift: 4 }");
        let y = run_forward(&mut *l, &[(&[2], &[0.0, 2.0])]);
        assert_close(&y[0].data, &[2.0, 3.0], 1e-6);
        check_layer_from("type: Log\nlog_param: { shift: 5 }", &[&[2, 3, 4]]);
        check_layer_from(
            "type: Log\nlog_param: { base: 10, scale: 0.5, shift: 4 }",
            &[&[2, 3, 4]],
        );
    }
}
