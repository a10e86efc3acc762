//! `HDF5Output` (`hdf5_output_param.file_name`): writes its two bottoms to an HDF5 file as the
//! datasets `data` and `label` (Caffe's names). The file is created (truncated) at setup; each
//! forward appends its batch along N, so after k forwards of batch B the datasets hold k * B
//! rows. Caffe 1.0 writes the same file on the first forward and then fails on the second
//! (`H5LTmake_dataset` on a name that exists); crema's first batch is byte-for-byte that file's
//! layout: float32, blobs of up to 4 axes stored with Caffe's legacy 4-D shape `N x C x H x W`.

use super::{BlobCounts, Layer};
use crate::data::hdf5 as h5;
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use std::path::PathBuf;

/// `HDF5Output` layer.
pub struct HDF5Output {
    path: PathBuf,
    file: Option<hdf5::File>,
    /// `data` and `label`, created at the first forward.
    sets: Vec<h5::Appender>,
}

/// Creates `HDF5Output` from `hdf5_output_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.hdf5_output_param.clone().unwrap_or_default();
    crate::ensure!(
        !d.file_name().is_empty(),
        "hdf5_output_param.file_name must be set"
    );
    Ok(Box::new(HDF5Output {
        path: PathBuf::from(d.file_name()),
        file: None,
        sets: Vec::new(),
    }))
}

/// Caffe's legacy `num x channels x height x width` view of a blob of up to 4 axes.
fn legacy_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    while s.len() < 4 {
        s.push(1);
    }
    s
}

impl Layer for HDF5Output {
    fn type_name(&self) -> &'static str {
        "HDF5Output"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(2, 0)
    }
    fn setup(&mut self, _bottom: &[&Blob], _ctx: &mut super::SetupCtx) -> Result<Vec<Blob>> {
        self.file = Some(h5::create(&self.path)?);
        self.sets.clear();
        Ok(Vec::new())
    }
    fn reshape(&mut self, bottom: &[&Blob], _top: &mut [&mut Blob]) -> Result<()> {
        let n = |b: &Blob| b.shape.first().copied().unwrap_or(1);
        crate::ensure!(
            n(bottom[0]) == n(bottom[1]),
            "data and label need the same N, got {} and {}",
            crate::blob::shape_str(&bottom[0].shape),
            crate::blob::shape_str(&bottom[1].shape)
        );
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        _top: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        let Some(file) = self.file.as_ref() else {
            crate::bail!("HDF5Output ran before setup");
        };
        for (i, (b, name)) in bottom.iter().zip(["data", "label"]).enumerate() {
            let shape = legacy_shape(&b.shape);
            match self.sets.get(i) {
                None => self
                    .sets
                    .push(h5::Appender::new(file, &self.path, name, &shape[1..])?),
                Some(set) => crate::ensure!(
                    set.rest() == &shape[1..],
                    "bottom `{name}` changed shape to {}; {} holds N x {}",
                    crate::blob::shape_str(&b.shape),
                    self.path.display(),
                    crate::blob::shape_str(set.rest())
                ),
            }
            self.sets[i].append(&self.path, shape[0], &b.data)?;
        }
        file.flush()
            .map_err(|e| crate::Error::format(&self.path, format!("flushing: {e}")))?;
        Ok(())
    }
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::data::hdf5 as h5;
    use crate::layers::{self, SetupCtx};
    use crate::testing::layer_param_from_yaml;
    use crate::Blob;
    use rand::SeedableRng;

    #[test]
    fn batches_are_appended_along_n_in_caffe_4d_shape() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.h5");
        let yaml = format!(
            "type: HDF5Output\nbottom: [d, l]\nhdf5_output_param: {{ file_name: '{}' }}",
            out.display()
        );
        let mut l = layers::create(&layer_param_from_yaml(&yaml).unwrap()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        l.setup(&[], &mut SetupCtx { rng: &mut rng }).unwrap();
        for k in 0..2 {
            let mut d = Blob::new(&[2, 3]);
            let mut lab = Blob::new(&[2]);
            for (i, v) in d.data.iter_mut().enumerate() {
                *v = (k * 6 + i) as f32 * 0.5;
            }
            lab.data = vec![k as f32 * 2.0, k as f32 * 2.0 + 1.0];
            l.reshape(&[&d, &lab], &mut []).unwrap();
            l.forward(&[&d, &lab], &mut [], &mut []).unwrap();
        }
        let file = h5::open(&out).unwrap();
        let (shape, data) = h5::read_f32(&file, &out, "data").unwrap();
        assert_eq!(shape, vec![4, 3, 1, 1]);
        let want: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        assert_eq!(data, want);
        let (shape, label) = h5::read_f32(&file, &out, "label").unwrap();
        assert_eq!(shape, vec![4, 1, 1, 1]);
        assert_eq!(label, [0., 1., 2., 3.]);
        // Different N in data and label is refused.
        let d = Blob::new(&[2, 3]);
        let lab = Blob::new(&[3]);
        let e = l.reshape(&[&d, &lab], &mut []).unwrap_err().to_string();
        assert!(e.contains("same N"), "{e}");
    }
}
