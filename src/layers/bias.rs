//! `Bias`: adds a blob broadcast over axes `[axis, axis + num_axes)` of bottom 0; the blob is
//! learned (one bottom, `bias_param.filler`, default constant 0) or is bottom 1.

use super::broadcast::{add_bias, bias_grad, Operand};
use super::{BlobCounts, Inplace, Layer, SetupCtx};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{filler, Blob, Result};

/// `Bias` layer.
pub struct Bias {
    op: Operand,
    filler: FillerParameter,
}

/// Creates `Bias` from `bias_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let b = p.bias_param.clone().unwrap_or_default();
    Ok(Box::new(Bias {
        op: Operand {
            axis: b.axis(),
            num_axes: b.num_axes(),
            ..Default::default()
        },
        filler: b.filler.clone().unwrap_or_else(|| filler::constant(0.0)),
    }))
}

impl Layer for Bias {
    fn type_name(&self) -> &'static str {
        "Bias"
    }
    fn blob_counts(&self) -> BlobCounts {
        Operand::blob_counts()
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let shape = self.op.set_up(bottom)?;
        if !self.op.learned {
            return Ok(Vec::new());
        }
        let b = ctx.filled(&shape, &self.filler)?;
        Ok(vec![b])
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        self.op.reshape(bottom, top)
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        if let Some(b) = bottom.first() {
            top[0].data.copy_from_slice(&b.data);
        }
        add_bias(self.op.g, self.op.values(bottom, params), &mut top[0].data);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        // In place: bottom[0].diff already holds dy, which is also dx.
        let dy = Inplace::top_diff(top, bottom).to_vec();
        if let Some(db) = self.op.diff(down, bottom, params) {
            bias_grad(self.op.g, &dy, db);
        }
        if down[0] && !top.is_empty() {
            bottom[0]
                .diff
                .iter_mut()
                .zip(&dy)
                .for_each(|(d, v)| *d += v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    #[test]
    fn forward_hand_values() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut h = Harness::new(
            "type: Bias",
            vec![Blob::from_data(&[2, 3, 2], x.clone()).unwrap()],
        )
        .unwrap();
        assert_eq!(h.params[0].data, vec![0.0; 3]);
        h.params[0].data = vec![1.0, -2.0, 10.0];
        h.forward().unwrap();
        let b = [1.0, -2.0, 10.0];
        let expect: Vec<f32> = (0..12).map(|i| x[i] + b[(i / 2) % 3]).collect();
        assert_close(&h.top[0].data, &expect, 1e-6);
        let f = vec![0.5, -0.5];
        let mut h = Harness::new(
            "type: Bias\nbias_param: { axis: -1 }",
            vec![
                Blob::from_data(&[2, 3, 2], x.clone()).unwrap(),
                Blob::from_data(&[2], f.clone()).unwrap(),
            ],
        )
        .unwrap();
        h.forward().unwrap();
        let expect: Vec<f32> = (0..12).map(|i| x[i] + f[i % 2]).collect();
        assert_close(&h.top[0].data, &expect, 1e-6);
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Bias\nbias_param: { filler: { type: gaussian } }",
            &[&[2, 3, 4]],
        );
        check_layer_from(
            "type: Bias\nbias_param: { axis: 0, num_axes: 2 }",
            &[&[2, 3, 4]],
        );
        check_layer_from("type: Bias", &[&[2, 3, 4], &[3, 4]]);
    }
}
