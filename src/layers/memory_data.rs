//! `MemoryData`: batches fed from Rust code (`memory_data_param`: `batch_size`, `channels`,
//! `height`, `width`). Push samples with [`MemoryData::push`] (reach the layer of a built net with
//! [`memory_data`]); each forward takes the next `batch_size` of them, wrapping around like Caffe.
//! `transform_param` is applied to each sample.

use super::{BlobCounts, Layer, SetupCtx};
use crate::data::transform::Transformer;
use crate::data::Sample;
use crate::proto::LayerParameter;
use crate::{Blob, Error, Net, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The `MemoryData` layer and the samples pushed into it.
pub struct MemoryData {
    batch: usize,
    shape: [usize; 3],
    out: [usize; 3],
    tf: Transformer,
    samples: Vec<Sample>,
    pos: usize,
    rng: StdRng,
}

/// Creates `MemoryData` from `memory_data_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.memory_data_param.unwrap_or_default();
    let shape = [
        d.channels() as usize,
        d.height() as usize,
        d.width() as usize,
    ];
    if d.batch_size() == 0 || shape.contains(&0) {
        return Err(Error::config(format!(
            "memory_data_param needs positive batch_size, channels, height and width (got {}, \
             {}, {}, {})",
            d.batch_size(),
            shape[0],
            shape[1],
            shape[2]
        )));
    }
    let tf = Transformer::new(&p.transform_param.clone().unwrap_or_default(), p.phase())?;
    let out = tf.output_shape(shape)?;
    Ok(Box::new(MemoryData {
        batch: d.batch_size() as usize,
        shape,
        out,
        tf,
        samples: Vec::new(),
        pos: 0,
        rng: StdRng::seed_from_u64(0),
    }))
}

impl MemoryData {
    /// Appends samples: `data` holds `n * channels * height * width` values (CHW per sample),
    /// `labels` holds `n` labels.
    pub fn push(&mut self, data: &[f32], labels: &[f32]) -> Result<()> {
        let per: usize = self.shape.iter().product();
        if !data.len().is_multiple_of(per) || data.len() / per != labels.len() {
            return Err(Error::Invalid(format!(
                "MemoryData takes samples of {}x{}x{} ({per} values) and one label each; got {} \
                 values and {} labels",
                self.shape[0],
                self.shape[1],
                self.shape[2],
                data.len(),
                labels.len()
            )));
        }
        for (x, &l) in data.chunks_exact(per).zip(labels) {
            self.samples.push(Sample {
                channels: self.shape[0],
                height: self.shape[1],
                width: self.shape[2],
                data: x.to_vec(),
                label: l as i32,
            });
        }
        Ok(())
    }

    /// Drops every pushed sample and starts over.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.pos = 0;
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The `MemoryData` layer called `layer` in a built net.
pub fn memory_data<'a>(net: &'a mut Net, layer: &str) -> Result<&'a mut MemoryData> {
    let entry = net
        .layers_mut()
        .iter_mut()
        .find(|l| l.name == layer)
        .ok_or_else(|| Error::Invalid(format!("the net has no layer `{layer}`")))?;
    entry
        .layer
        .as_any_mut()
        .and_then(|a| a.downcast_mut::<MemoryData>())
        .ok_or_else(|| Error::Invalid(format!("layer `{layer}` is not a MemoryData layer")))
}

impl Layer for MemoryData {
    fn type_name(&self) -> &'static str {
        "MemoryData"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(0),
            min_top: Some(1),
            max_top: Some(2),
            ..Default::default()
        }
    }
    fn setup(&mut self, _: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.rng = StdRng::seed_from_u64(ctx.rng.gen());
        Ok(Vec::new())
    }
    fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
        self.pos = 0;
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
    fn reshape(&mut self, _: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        top[0].reshape(&[self.batch, self.out[0], self.out[1], self.out[2]]);
        if let Some(l) = top.get_mut(1) {
            l.reshape(&[self.batch]);
        }
        Ok(())
    }
    fn forward(&mut self, _: &[&Blob], top: &mut [&mut Blob], _: &mut [&mut Blob]) -> Result<()> {
        if self.samples.is_empty() {
            return Err(Error::config(
                "MemoryData has no samples; push some with crema::layers::memory_data(&mut net, \
                 name)?.push(data, labels) before running the net",
            ));
        }
        let per: usize = self.out.iter().product();
        for k in 0..self.batch {
            if self.pos >= self.samples.len() {
                self.pos = 0;
            }
            let s = &self.samples[self.pos];
            self.pos += 1;
            self.tf
                .apply(s, &mut self.rng, &mut top[0].data[k * per..(k + 1) * per])?;
            if let Some(l) = top.get_mut(1) {
                l.data[k] = s.label as f32;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::{NetParameter, Phase};
    use crate::testing::err_text;
    use rand::SeedableRng;

    #[test]
    fn pushed_batches_flow_through_a_net() {
        let net: NetParameter = crate::spec::from_yaml_str(
            "layer:\n  - { name: mem, type: MemoryData, top: [data, label], \
             memory_data_param: { batch_size: 2, channels: 1, height: 1, width: 3 }, \
             transform_param: { scale: 0.5 } }",
            "t",
        )
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut n = crate::Net::for_phase(&net, Phase::Train, &mut rng).unwrap();
        assert!(err_text(n.forward()).contains("no samples"));
        let m = super::memory_data(&mut n, "mem").unwrap();
        m.push(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[0., 1., 2.])
            .unwrap();
        assert!(m.push(&[1., 2.], &[0.]).is_err());
        n.forward().unwrap();
        assert_eq!(
            n.blob("data").unwrap().data,
            vec![0.5, 1., 1.5, 2., 2.5, 3.]
        );
        assert_eq!(n.blob("label").unwrap().data, vec![0., 1.]);
        n.forward().unwrap();
        assert_eq!(
            n.blob("data").unwrap().data,
            vec![3.5, 4., 4.5, 0.5, 1., 1.5]
        );
        assert_eq!(n.blob("label").unwrap().data, vec![2., 0.]);
        assert!(super::memory_data(&mut n, "nope").is_err());
    }
}
