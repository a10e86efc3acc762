//! `Embed`: a lookup table. Each id in the bottom selects one row of `W` (`input_dim x
//! num_output`, transposed relative to `InnerProduct` so a lookup reads contiguous memory) and
//! the bias is added. The top has the bottom's shape plus one axis of `num_output`.

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{Blob, Error, Result};

/// `Embed` layer. Blobs: `W [input_dim, num_output]`, optional `b [num_output]`.
pub struct Embed {
    num_output: usize,
    input_dim: usize,
    bias_term: bool,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
}

/// Creates `Embed` from `embed_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let e = p.embed_param.clone().unwrap_or_default();
    crate::ensure!(
        e.num_output() > 0,
        "embed_param.num_output must be set and positive"
    );
    crate::ensure!(
        e.input_dim() > 0,
        "embed_param.input_dim (the number of distinct ids) must be set and positive"
    );
    Ok(Box::new(Embed {
        num_output: e.num_output() as usize,
        input_dim: e.input_dim() as usize,
        bias_term: e.bias_term(),
        weight_filler: e.weight_filler.clone().unwrap_or_default(),
        bias_filler: e.bias_filler.clone().unwrap_or_default(),
    }))
}

impl Embed {
    /// The row index for bottom value `v` at position `i`, or a clear error.
    fn index(&self, v: f32, i: usize) -> Result<usize> {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(Error::config(format!(
                "bottom value {v} at position {i} is not an integer id (Embed reads ids stored as floats)"
            )));
        }
        if v < 0.0 || v >= self.input_dim as f32 {
            return Err(Error::config(format!(
                "id {v} at position {i} is out of range: embed_param.input_dim is {}, so ids must be in [0, {})",
                self.input_dim, self.input_dim
            )));
        }
        Ok(v as usize)
    }
}

impl Layer for Embed {
    fn type_name(&self) -> &'static str {
        "Embed"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn setup(&mut self, _bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let w = ctx.filled(&[self.input_dim, self.num_output], &self.weight_filler)?;
        let mut params = vec![w];
        if self.bias_term {
            let b = ctx.filled(&[self.num_output], &self.bias_filler)?;
            params.push(b);
        }
        Ok(params)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let mut shape = bottom[0].shape.clone();
        shape.push(self.num_output);
        top[0].reshape(&shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let k = self.num_output;
        for (i, &v) in bottom[0].data.iter().enumerate() {
            let id = self.index(v, i)?;
            let row = &params[0].data[id * k..(id + 1) * k];
            let out = &mut top[0].data[i * k..(i + 1) * k];
            out.copy_from_slice(row);
            if self.bias_term {
                out.iter_mut()
                    .zip(&params[1].data)
                    .for_each(|(o, b)| *o += b);
            }
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        crate::ensure!(
            !down.first().copied().unwrap_or(false),
            "cannot backpropagate to the ids (bottom 0) of an Embed layer"
        );
        let k = self.num_output;
        let dy = &top[0].diff;
        for (i, &v) in bottom[0].data.iter().enumerate() {
            let id = self.index(v, i)?;
            let row = &mut params[0].diff[id * k..(id + 1) * k];
            row.iter_mut()
                .zip(&dy[i * k..(i + 1) * k])
                .for_each(|(w, d)| *w += d);
        }
        if self.bias_term {
            for chunk in dy.chunks_exact(k) {
                params[1]
                    .diff
                    .iter_mut()
                    .zip(chunk)
                    .for_each(|(b, d)| *b += d);
            }
        }
        Ok(())
    }
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        false
    }
    fn index_bound(&self, bottom: usize, _shapes: &[Vec<usize>]) -> Option<usize> {
        (bottom == 0).then_some(self.input_dim)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    const YAML: &str = "type: Embed\nembed_param: { num_output: 3, input_dim: 5, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }";

    #[test]
    fn forward_selects_rows_and_adds_bias() {
        let ids = Blob::from_data(&[2, 2], vec![4.0, 0.0, 2.0, 4.0]).unwrap();
        let mut h = Harness::new(YAML, vec![ids]).unwrap();
        assert_eq!(h.params[0].shape, vec![5, 3]);
        h.params[0].data = (0..15).map(|v| v as f32).collect();
        h.params[1].data = vec![0.5, -0.5, 0.0];
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 2, 3]);
        #[rustfmt::skip]
        let expect = [
            12.5, 12.5, 14.0, 0.5, 0.5, 2.0,
            6.5, 6.5, 8.0, 12.5, 12.5, 14.0,
        ];
        assert_close(&h.top[0].data, &expect, 0.0);
    }

    #[test]
    fn backward_accumulates_rows() {
        let ids = Blob::from_data(&[3], vec![1.0, 1.0, 3.0]).unwrap();
        let mut h = Harness::new(YAML, vec![ids]).unwrap();
        h.forward().unwrap();
        h.top[0].diff = vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0, -1.0, -1.0, -1.0];
        h.params[0].diff = vec![0.0; 15];
        h.params[1].diff = vec![0.0; 3];
        h.backward(&[false]).unwrap();
        let mut expect = vec![0.0; 15];
        expect[3..6].copy_from_slice(&[11.0, 22.0, 33.0]);
        expect[9..12].copy_from_slice(&[-1.0, -1.0, -1.0]);
        assert_close(&h.params[0].diff, &expect, 0.0);
        assert_close(&h.params[1].diff, &[10.0, 21.0, 32.0], 0.0);
        assert!(h.backward(&[true]).is_err());
    }

    #[test]
    fn bad_ids_are_clear_errors() {
        let ids = Blob::from_data(&[2], vec![1.0, 5.0]).unwrap();
        let mut h = Harness::new(YAML, vec![ids]).unwrap();
        let msg = err_text(h.forward());
        assert!(
            msg.contains("out of range") && msg.contains("input_dim is 5"),
            "{msg}"
        );
        h.bottom[0].data = vec![1.5, 0.0];
        let msg = err_text(h.forward());
        assert!(msg.contains("not an integer"), "{msg}");
        h.bottom[0].data = vec![-1.0, 0.0];
        assert!(err_text(h.forward()).contains("out of range"));
    }

    #[test]
    fn gradients() {
        check_layer_from(YAML, &[&[3, 2]]);
        check_layer_from(
            "type: Embed\nembed_param: { num_output: 4, input_dim: 3, bias_term: false, weight_filler: { type: gaussian } }",
            &[&[5]],
        );
    }
}
