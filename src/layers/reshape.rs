//! `Reshape`: gives the input a new shape with the same count (a copy). `reshape_param.shape`
//! replaces the input axes `[axis, axis + num_axes)` (all from `axis` when `num_axes` is -1);
//! a dim of 0 copies the corresponding input dim, one dim of -1 is inferred.

use super::same_data::{boxed, NewShape};
use super::Layer;
use crate::blob::shape_str;
use crate::proto::LayerParameter;
use crate::Result;

/// `Reshape` layer.
pub struct Reshape {
    dims: Vec<i64>,
    axis: i32,
    num_axes: i32,
}

/// Creates a `Reshape` from `reshape_param`, checking the dims.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let rp = p.reshape_param.clone().unwrap_or_default();
    let dims = rp.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
    crate::ensure!(
        dims.iter().filter(|&&d| d == -1).count() <= 1,
        "reshape_param.shape may infer at most one dim (-1), got {dims:?}"
    );
    crate::ensure!(
        dims.iter().all(|&d| d >= -1),
        "reshape_param.shape dims must be positive, 0 (copy) or -1 (infer), got {dims:?}"
    );
    crate::ensure!(
        rp.num_axes() >= -1,
        "reshape_param.num_axes must be >= -1, got {}",
        rp.num_axes()
    );
    boxed(Reshape {
        dims,
        axis: rp.axis(),
        num_axes: rp.num_axes(),
    })
}

/// The output shape for input `shape` (Caffe's rules).
pub fn reshaped(shape: &[usize], dims: &[i64], axis: i32, num_axes: i32) -> Result<Vec<usize>> {
    let n = shape.len() as i32;
    let start = if axis >= 0 { axis } else { n + axis + 1 };
    crate::ensure!(
        (0..=n).contains(&start),
        "reshape_param.axis {axis} is out of range for input shape {}",
        shape_str(shape)
    );
    let start = start as usize;
    let end = if num_axes == -1 {
        shape.len()
    } else {
        start + num_axes as usize
    };
    crate::ensure!(
        end <= shape.len(),
        "reshape_param axis {axis} with num_axes {num_axes} goes past the {} axes of input shape {}",
        shape.len(),
        shape_str(shape)
    );
    let mut out = shape[..start].to_vec();
    let mut infer = None;
    for (i, &d) in dims.iter().enumerate() {
        match d {
            0 => {
                let Some(&v) = shape.get(start + i) else {
                    crate::bail!(
                        "reshape_param.shape dim {i} is 0 (copy), but input shape {} has no axis {}",
                        shape_str(shape),
                        start + i
                    );
                };
                out.push(v);
            }
            -1 => {
                infer = Some(out.len());
                out.push(1);
            }
            d => out.push(d as usize),
        }
    }
    out.extend_from_slice(&shape[end..]);
    let count: usize = shape.iter().product();
    if let Some(k) = infer {
        let known: usize = out.iter().product();
        crate::ensure!(
            known > 0 && count.is_multiple_of(known),
            "reshape_param.shape {dims:?} cannot reshape input {} ({count} values): the known dims \
             multiply to {known}, which does not divide {count}",
            shape_str(shape)
        );
        out[k] = count / known;
    }
    let got: usize = out.iter().product();
    crate::ensure!(
        got == count,
        "reshape_param.shape {dims:?} gives {} ({got} values) but the input {} has {count}",
        shape_str(&out),
        shape_str(shape)
    );
    Ok(out)
}

impl NewShape for Reshape {
    const TYPE: &'static str = "Reshape";
    fn top_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        reshaped(shape, &self.dims, self.axis, self.num_axes)
    }
}

#[cfg(test)]
mod tests {
    use super::reshaped;
    use crate::testing::{check_layer_from, err_text, layer_from_yaml, run_forward};

    #[test]
    fn reshape_rules() {
        let s = [2, 3, 4, 5];
        assert_eq!(reshaped(&s, &[0, -1], 0, -1).unwrap(), vec![2, 60]);
        assert_eq!(reshaped(&s, &[0, 0, 20], 0, -1).unwrap(), vec![2, 3, 20]);
        assert_eq!(reshaped(&s, &[-1, 4], 0, -1).unwrap(), vec![30, 4]);
        // Replace only axes [1, 3): 3x4 -> 12.
        assert_eq!(reshaped(&s, &[-1], 1, 2).unwrap(), vec![2, 12, 5]);
        // Insert a singleton axis after axis 1 (num_axes 0).
        assert_eq!(reshaped(&s, &[1], 2, 0).unwrap(), vec![2, 3, 1, 4, 5]);
        // Negative axis counts from the end (-1 = after the last axis).
        assert_eq!(
            reshaped(&s, &[1, 1], -1, 0).unwrap(),
            vec![2, 3, 4, 5, 1, 1]
        );
        assert_eq!(
            reshaped(&s, &[-1, 0, 1], -4, 2).unwrap(),
            vec![2, 3, 4, 1, 5]
        );
        let e = err_text(reshaped(&s, &[7, -1], 0, -1));
        assert!(e.contains("does not divide"), "{e}");
        let e = err_text(reshaped(&s, &[2, 3, 4, 6], 0, -1));
        assert!(e.contains("2x3x4x6") && e.contains("2x3x4x5"), "{e}");
        assert!(reshaped(&s, &[0, 0, 0, 0, 0], 0, -1).is_err());
        let p = crate::testing::layer_param_from_yaml(
            "type: Reshape\nreshape_param: { shape: { dim: [-1, -1] } }",
        )
        .unwrap();
        assert!(err_text(super::create(&p)).contains("at most one"));
    }

    #[test]
    fn reshape_forward_and_gradient() {
        let yaml = "type: Reshape\nreshape_param: { shape: { dim: [0, -1, 2] } }";
        let mut l = layer_from_yaml(yaml);
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let y = run_forward(&mut *l, &[(&[2, 3, 2], &x)]);
        assert_eq!(y[0].shape, vec![2, 3, 2]);
        assert_eq!(y[0].data, x);
        let mut l = layer_from_yaml("type: Reshape\nreshape_param: { shape: { dim: [4, -1] } }");
        let y = run_forward(&mut *l, &[(&[2, 3, 2], &x)]);
        assert_eq!(y[0].shape, vec![4, 3]);
        check_layer_from(
            "type: Reshape\nreshape_param: { shape: { dim: [-1, 3] } }",
            &[&[2, 3, 2]],
        );
    }
}
