//! `crema.io`'s native half (images through the library's one decoder and resizer, BlobProto
//! bytes through its one reader) and `crema.Classifier` over the library's classify path.

use crate::{guard, guard_detached, Exclusive};
use crema::classify::{Crops, Mean};
use crema::data::photo::{self, DecodeLimits, Image};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// pycaffe's `caffe.io.load_image`: `H x W x 3` RGB (or `H x W x 1` grey) floats in `0..1`.
#[pyfunction]
#[pyo3(signature = (filename, color=true))]
fn load_image<'py>(
    py: Python<'py>,
    filename: PathBuf,
    color: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let img = guard(|| photo::read(&filename, Some(color), DecodeLimits::default()))?;
    let data: Vec<f32> = img.data.iter().map(|&v| v as f32 / 255.0).collect();
    to_array(py, &[img.height, img.width, img.channels], data)
}

fn to_array<'py>(
    py: Python<'py>,
    shape: &[usize],
    data: Vec<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

/// An `H x W x C` float image in `0..1` as the library's 8-bit image (values rounded).
fn to_image(im: &PyReadonlyArrayDyn<'_, f32>) -> PyResult<Image> {
    let (h, w, c) = match *im.shape() {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        ref s => {
            return Err(PyValueError::new_err(format!(
                "an image is H x W or H x W x C, got shape {s:?}"
            )))
        }
    };
    let bytes: Vec<u8> = im
        .as_array()
        .iter()
        .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    guard(|| Image::new(h, w, c, bytes))
}

/// pycaffe's `caffe.io.resize_image(im, (h, w))` for `0..1` images, through the library's
/// bilinear resize (the image is quantised to 8 bits first, as decoded images are).
#[pyfunction]
fn resize_image<'py>(
    py: Python<'py>,
    im: PyReadonlyArrayDyn<'_, f32>,
    new_dims: (usize, usize),
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let img = to_image(&im)?;
    let (h, w) = new_dims;
    if h == 0 || w == 0 || h.saturating_mul(w) > 1 << 28 {
        return Err(PyValueError::new_err(format!("cannot resize to {h}x{w}")));
    }
    let out: Vec<f32> = photo::resize_bilinear(&img, h, w)
        .into_iter()
        .map(|v| v / 255.0)
        .collect();
    to_array(py, &[h, w, img.channels], out)
}

/// pycaffe's `caffe.io.blobproto_to_array`, from the bytes of a `.binaryproto` file.
#[pyfunction]
fn blobproto_to_array<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let b = guard(|| crema::caffe::binaryproto::decode_blob_proto(data, "blobproto"))?;
    to_array(py, &b.shape, b.data)
}

/// pycaffe's `caffe.io.array_to_blobproto`: the bytes of a `.binaryproto` holding the array.
#[pyfunction]
fn array_to_blobproto<'py>(
    py: Python<'py>,
    arr: PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<Bound<'py, PyBytes>> {
    use prost::Message;
    let b =
        guard(|| crema::Blob::from_data(arr.shape(), arr.as_array().iter().copied().collect()))?;
    Ok(PyBytes::new(
        py,
        &crema::blob::blob_to_proto(&b, false).encode_to_vec(),
    ))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load_image, m)?)?;
    m.add_function(wrap_pyfunction!(resize_image, m)?)?;
    m.add_function(wrap_pyfunction!(blobproto_to_array, m)?)?;
    m.add_function(wrap_pyfunction!(array_to_blobproto, m)?)?;
    Ok(())
}

/// pycaffe's `caffe.Classifier` on the library's classify path: `Classifier(model, weights,
/// image_dims=None, mean=None, input_scale=None, raw_scale=None, channel_swap=None)`;
/// `predict(images, oversample=True)` takes `H x W x C` images in `0..1` (as `load_image`
/// gives) and returns the output per image, averaged over its crops.
#[pyclass(module = "crema")]
pub struct Classifier {
    inner: Exclusive<crema::classify::Classifier>,
}

#[pymethods]
impl Classifier {
    #[new]
    #[pyo3(signature = (model, weights, image_dims=None, mean=None, input_scale=None, raw_scale=None, channel_swap=None, output=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model: PathBuf,
        weights: PathBuf,
        image_dims: Option<(usize, usize)>,
        mean: Option<PyReadonlyArrayDyn<'_, f32>>,
        input_scale: Option<f32>,
        raw_scale: Option<f32>,
        channel_swap: Option<Vec<usize>>,
        output: Option<String>,
    ) -> PyResult<Classifier> {
        let mean = match mean {
            None => None,
            Some(m) if m.ndim() == 1 => Some(Mean::Values(m.as_array().iter().copied().collect())),
            Some(m) => Some(Mean::Image(guard(|| {
                crema::Blob::from_data(m.shape(), m.as_array().iter().copied().collect())
            })?)),
        };
        let inner = guard(|| {
            let param = crema::load_net(&model)?;
            let mut net =
                crema::Net::for_phase(&param, crema::proto::Phase::Test, &mut crate::net_rng())?;
            let trained = crema::caffe::caffemodel::read(&weights)?;
            net.copy_trained_layers_from(&trained, &weights.display().to_string())?;
            crema::classify::Classifier::new(net, output.as_deref(), |p| {
                // pycaffe's defaults: no transformation unless asked.
                p.raw_scale = raw_scale.unwrap_or(1.0);
                p.channel_swap = channel_swap
                    .clone()
                    .unwrap_or_else(|| (0..p.channels).collect());
                p.scale = input_scale.unwrap_or(1.0);
                p.mean = mean;
                p.resize = image_dims;
                Ok(())
            })
        })?;
        Ok(Classifier {
            inner: Exclusive::new(inner),
        })
    }

    /// Class scores per image (`N x K`), averaged over the 10 crops when `oversample`.
    #[pyo3(signature = (inputs, oversample=true))]
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        inputs: Vec<PyReadonlyArrayDyn<'py, f32>>,
        oversample: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let images = inputs.iter().map(to_image).collect::<PyResult<Vec<_>>>()?;
        let inner = self.inner.get_mut();
        inner.pre.crops = if oversample {
            Crops::Oversample
        } else {
            Crops::Center
        };
        let scores = guard_detached(py, move || inner.classify(&images))?;
        let k = scores.first().map(Vec::len).unwrap_or(0);
        let n = scores.len();
        to_array(py, &[n, k], scores.into_iter().flatten().collect())
    }
}
