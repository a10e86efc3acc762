//! The layer behind the file-reading data layers (`IdxData`, `Data`, `ImageData`): it hands the
//! batches a [`Loader`] prefetches on its thread to the net.

use super::{BlobCounts, Layer, SetupCtx};
use crate::data::prefetch::{Batch, Loader, Shard};
use crate::proto::{LayerParameter, TransformationParameter};
use crate::{Blob, Result};
use rand::Rng;

/// Tops `data` (`[N, C, H, W]`) and, optionally, `label` (`[N]`), filled from a [`Loader`]. The
/// thread is seeded from the net's random generator at setup, so a solver's `random_seed` makes
/// the batches reproducible.
pub struct LoaderLayer {
    ty: &'static str,
    loader: Loader,
    pending: Option<Batch>,
    /// The seed drawn at setup, kept so that sharding restarts the same record stream.
    seed: u64,
}

impl LoaderLayer {
    /// Wraps a loader as the layer type `ty`.
    pub fn new(ty: &'static str, loader: Loader) -> Self {
        LoaderLayer {
            ty,
            loader,
            pending: None,
            seed: 0,
        }
    }
}

impl Layer for LoaderLayer {
    fn type_name(&self) -> &'static str {
        self.ty
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
        self.pending = None;
        self.seed = ctx.rng.gen();
        self.loader.start(self.seed)?;
        Ok(Vec::new())
    }

    fn dataset_len(&self) -> Option<usize> {
        Some(self.loader.dataset().len())
    }

    fn reseed(&mut self, seed: u64) {
        self.pending = None;
        self.seed = seed;
        self.loader.restart(seed);
    }

    fn shard(&mut self, rank: usize, count: usize) {
        self.pending = None;
        self.loader.set_shard(Shard { rank, count });
        self.loader.restart(self.seed);
    }

    fn reshape(&mut self, _: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        if self.pending.is_none() {
            self.pending = Some(self.loader.next_batch()?);
        }
        if let Some(b) = &self.pending {
            top[0].reshape(&b.shape);
            if let Some(l) = top.get_mut(1) {
                l.reshape(&[b.shape[0]]);
            }
        }
        Ok(())
    }

    fn forward(&mut self, _: &[&Blob], top: &mut [&mut Blob], _: &mut [&mut Blob]) -> Result<()> {
        let b = match self.pending.take() {
            Some(b) => b,
            None => self.loader.next_batch()?,
        };
        top[0].reshape(&b.shape);
        top[0].data.copy_from_slice(&b.data);
        if let Some(l) = top.get_mut(1) {
            l.reshape(&[b.shape[0]]);
            l.data.copy_from_slice(&b.labels);
        }
        Ok(())
    }
}

/// `transform_param`, with the legacy copies some data parameters carry (`scale`, `mean_file`,
/// `crop_size`, `mirror`) moved in where `transform_param` leaves them unset (Caffe's upgrade).
pub fn merged_transform(
    p: &LayerParameter,
    scale: Option<f32>,
    mean_file: Option<&String>,
    crop_size: Option<u32>,
    mirror: Option<bool>,
) -> TransformationParameter {
    let mut t = p.transform_param.clone().unwrap_or_default();
    if t.scale.is_none() {
        t.scale = scale;
    }
    if t.mean_file.is_none() && t.mean_value.is_empty() {
        t.mean_file = mean_file.cloned();
    }
    if t.crop_size.is_none() {
        t.crop_size = crop_size;
    }
    if t.mirror.is_none() {
        t.mirror = mirror;
    }
    t
}
