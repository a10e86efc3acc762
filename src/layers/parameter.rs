//! `Parameter` (Caffe 1.0): no bottoms; one learnable blob of `parameter_param.shape`
//! (zeros, as Caffe leaves it, until weights are loaded) exposed as the top, so a net can learn
//! a free tensor. Backward adds the top's gradient into the blob's.

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Parameter` layer.
pub struct Parameter {
    shape: Vec<usize>,
}

/// Creates `Parameter` from `parameter_param.shape`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let shape = p
        .parameter_param
        .as_ref()
        .and_then(|pp| pp.shape.as_ref())
        .map(|s| s.dim.clone())
        .ok_or_else(|| {
            crate::Error::config("Parameter needs parameter_param { shape { dim: .. } }")
        })?;
    let mut dims = Vec::with_capacity(shape.len());
    let mut count: u64 = 1;
    for d in shape {
        crate::ensure!(
            d > 0,
            "parameter_param.shape dimensions must be positive, got {d}"
        );
        count = count.saturating_mul(d as u64);
        dims.push(d as usize);
    }
    crate::ensure!(
        count <= (1 << 31),
        "parameter_param.shape holds {count} values, more than 2^31"
    );
    Ok(Box::new(Parameter { shape: dims }))
}

impl Layer for Parameter {
    fn type_name(&self) -> &'static str {
        "Parameter"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(0, 1)
    }
    fn setup(&mut self, _: &[&Blob], _: &mut SetupCtx) -> Result<Vec<Blob>> {
        Ok(vec![Blob::new(&self.shape)])
    }
    fn reshape(&mut self, _: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        top[0].reshape(&self.shape);
        Ok(())
    }
    fn forward(
        &mut self,
        _: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        top[0].data.copy_from_slice(&params[0].data);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        _: &[bool],
        _: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        crate::math::axpy(1.0, &top[0].diff, &mut params[0].diff);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_param_from_yaml, Harness};

    #[test]
    fn exposes_its_blob_and_learns_it() {
        let yaml = "type: Parameter\nparameter_param: { shape: { dim: [2, 3] } }";
        let mut h = Harness::new(yaml, vec![]).unwrap();
        assert_eq!(h.params[0].shape, vec![2, 3]);
        assert_eq!(h.params[0].data, vec![0.0; 6], "Caffe leaves it zero");
        h.params[0].data = vec![1., 2., 3., 4., 5., 6.];
        h.forward().unwrap();
        assert_eq!(h.top[0].data, vec![1., 2., 3., 4., 5., 6.]);
        h.top[0].diff = vec![0.5; 6];
        h.backward(&[]).unwrap();
        assert_eq!(h.params[0].diff, vec![0.5; 6]);
        check_layer_from(yaml, &[]);
        let p = layer_param_from_yaml("type: Parameter").unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("parameter_param"));
    }
}
