//! `Flatten`: merges axes `axis..=end_axis` into one (a copy; not in place, as in Caffe).

use super::same_data::{boxed, NewShape};
use super::Layer;
use crate::blob::canonical_axis;
use crate::proto::LayerParameter;
use crate::Result;

/// `Flatten` layer.
pub struct Flatten {
    axis: i32,
    end_axis: i32,
}

/// Creates a `Flatten` from `flatten_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let fp = p.flatten_param.unwrap_or_default();
    boxed(Flatten {
        axis: fp.axis(),
        end_axis: fp.end_axis(),
    })
}

/// The flattened shape of `shape` for Caffe's `axis` and `end_axis`.
pub fn flat_shape(shape: &[usize], axis: i32, end_axis: i32) -> Result<Vec<usize>> {
    let start = canonical_axis(axis, shape.len())?;
    let end = canonical_axis(end_axis, shape.len())?;
    crate::ensure!(
        start <= end,
        "flatten_param.axis ({axis}) comes after end_axis ({end_axis}) for input shape {}",
        crate::blob::shape_str(shape)
    );
    let mut out = shape[..start].to_vec();
    out.push(shape[start..=end].iter().product());
    out.extend_from_slice(&shape[end + 1..]);
    Ok(out)
}

impl NewShape for Flatten {
    const TYPE: &'static str = "Flatten";
    fn top_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        flat_shape(shape, self.axis, self.end_axis)
    }
}

#[cfg(test)]
mod tests {
    use super::flat_shape;
    use crate::testing::{check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn flatten_shapes_values_and_gradient() {
        assert_eq!(flat_shape(&[2, 3, 4, 5], 1, -1).unwrap(), vec![2, 60]);
        assert_eq!(flat_shape(&[2, 3, 4, 5], 1, 2).unwrap(), vec![2, 12, 5]);
        assert_eq!(flat_shape(&[2, 3, 4, 5], 0, -1).unwrap(), vec![120]);
        assert_eq!(flat_shape(&[2, 3, 4, 5], -2, -1).unwrap(), vec![2, 3, 20]);
        assert!(flat_shape(&[2, 3], 1, 0).is_err());
        assert!(flat_shape(&[2, 3], 3, -1).is_err());
        let mut l = layer_from_yaml("type: Flatten");
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let y = run_forward(&mut *l, &[(&[2, 3, 2], &x)]);
        assert_eq!(y[0].shape, vec![2, 6]);
        assert_eq!(y[0].data, x);
        check_layer_from(
            "type: Flatten\nflatten_param: { axis: 1, end_axis: 2 }",
            &[&[2, 3, 2, 2]],
        );
    }
}
