//! `Input`: declares net inputs and their shapes (deploy nets); the data is written by the user.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Error, Result};

/// `Input` layer: one shape per top, or one shape for all tops.
pub struct Input {
    shapes: Vec<Vec<usize>>,
}

/// Creates `Input` from `input_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let shapes: Vec<Vec<usize>> = p
        .input_param
        .as_ref()
        .map(|ip| {
            ip.shape
                .iter()
                .map(|s| s.dim.iter().map(|&d| d.max(0) as usize).collect())
                .collect()
        })
        .unwrap_or_default();
    let tops = p.top.len();
    if shapes.len() != 1 && shapes.len() != tops {
        return Err(Error::config(format!(
            "input_param gives {} shape(s) for {tops} top(s); give one shape per top or one for all",
            shapes.len()
        )));
    }
    for s in &p
        .input_param
        .as_ref()
        .map(|ip| ip.shape.clone())
        .unwrap_or_default()
    {
        if s.dim.iter().any(|&d| d < 0) {
            return Err(Error::config(format!(
                "input shape {:?} has a negative dimension",
                s.dim
            )));
        }
    }
    Ok(Box::new(Input { shapes }))
}

impl Layer for Input {
    fn type_name(&self) -> &'static str {
        "Input"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(0),
            min_top: Some(1),
            ..Default::default()
        }
    }
    fn reshape(&mut self, _: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        // Shapes are set once; later the user may reshape input blobs freely.
        for (i, t) in top.iter_mut().enumerate() {
            if t.shape.is_empty() && t.data.is_empty() {
                let s = if self.shapes.len() == 1 {
                    &self.shapes[0]
                } else {
                    &self.shapes[i]
                };
                t.reshape(s);
            }
        }
        Ok(())
    }
    fn forward(&mut self, _: &[&Blob], _: &mut [&mut Blob], _: &mut [&mut Blob]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{err_text, layer_param_from_yaml, run_forward};

    #[test]
    fn input_shapes_tops() {
        let mut l = crate::testing::layer_from_yaml(
            "type: Input\ntop: [data]\ninput_param: { shape: { dim: [2, 3, 4] } }",
        );
        let t = run_forward(&mut *l, &[]);
        assert_eq!(t[0].shape, vec![2, 3, 4]);
        let p = layer_param_from_yaml(
            "type: Input\ntop: [a, b, c]\ninput_param: { shape: [ { dim: [1] }, { dim: [2] } ] }",
        )
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("2 shape(s) for 3 top(s)"));
    }
}
