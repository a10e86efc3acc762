//! `SPP` (spatial pyramid pooling, He et al. 2014; Caffe 1.0's `SPPLayer`): for each level
//! `l < pyramid_height` the `H x W` input is pooled (`spp_param.pool`, MAX or AVE) into
//! `2^l x 2^l` bins with kernel `ceil(H / 2^l)`, stride = kernel and pad
//! `(kernel 2^l - H + 1) / 2` (likewise for W), each level flattened and all levels
//! concatenated: top `[N, C * sum_l 4^l]`. With `pyramid_height: 1` the top is the single
//! global pooling, `[N, C, 1, 1]`, as in Caffe. Like Caffe, a size whose padding would reach the
//! kernel (Caffe's pooling check) is refused.

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::spp_parameter::PoolMethod as SppPool;
use crate::proto::{pooling_parameter::PoolMethod, LayerParameter, PoolingParameter};
use crate::{Blob, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `SPP` layer: one internal `Pooling` per level.
pub struct Spp {
    param: LayerParameter,
    height: usize,
    pool: PoolMethod,
    /// The input size the levels are built for.
    built_for: [usize; 2],
    levels: Vec<(Box<dyn Layer>, Blob)>,
}

/// Creates `SPP` from `spp_param` (`pyramid_height` required).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let sp = p.spp_param.unwrap_or_default();
    let height = sp.pyramid_height.unwrap_or(0) as usize;
    crate::ensure!(
        (1..=16).contains(&height),
        "spp_param.pyramid_height must be between 1 and 16, got {height}"
    );
    let pool = match sp.pool() {
        SppPool::Max => PoolMethod::Max,
        SppPool::Ave => PoolMethod::Ave,
        SppPool::Stochastic => crate::bail!(
            "SPP with STOCHASTIC pooling is not supported (Caffe pads every level, and padded \
             stochastic pooling is not defined); use MAX or AVE"
        ),
    };
    Ok(Box::new(Spp {
        param: p.clone(),
        height,
        pool,
        built_for: [0, 0],
        levels: Vec::new(),
    }))
}

/// Kernel and pad of `bins` bins over `n` (Caffe's `GetPoolingParam`).
fn kernel_pad(n: usize, bins: usize) -> (usize, usize) {
    let k = n.div_ceil(bins);
    let rem = k * bins - n;
    (k, rem.div_ceil(2))
}

impl Spp {
    /// The pooling of level `l` for an `h x w` input.
    fn level_param(&self, l: usize, h: usize, w: usize) -> LayerParameter {
        let bins = 1usize << l;
        let (kh, ph) = kernel_pad(h, bins);
        let (kw, pw) = kernel_pad(w, bins);
        let pp = PoolingParameter {
            pool: Some(self.pool as i32),
            kernel_h: Some(kh as u32),
            kernel_w: Some(kw as u32),
            stride_h: Some(kh as u32),
            stride_w: Some(kw as u32),
            pad_h: Some(ph as u32),
            pad_w: Some(pw as u32),
            ..Default::default()
        };
        LayerParameter {
            name: Some(format!("{}_level{l}", self.param.name())),
            r#type: Some("Pooling".into()),
            phase: self.param.phase,
            pooling_param: Some(pp),
            ..Default::default()
        }
    }

    /// (Re)builds the levels' pooling layers when the input size changes.
    fn build(&mut self, bottom: &Blob) -> Result<()> {
        crate::ensure!(
            bottom.num_axes() == 4,
            "SPP needs a 4-D bottom (N x C x H x W), got {}",
            bottom.shape_string()
        );
        let (h, w) = (bottom.shape[2], bottom.shape[3]);
        if self.built_for == [h, w] && !self.levels.is_empty() {
            return Ok(());
        }
        let mut levels = Vec::with_capacity(self.height);
        let mut rng = StdRng::seed_from_u64(0);
        for l in 0..self.height {
            let mut p = super::pooling::create(&self.level_param(l, h, w)).map_err(|e| {
                crate::Error::config(format!(
                    "SPP level {l} ({} bins a side) of a {h}x{w} input: {e}",
                    1usize << l
                ))
            })?;
            p.setup(&[bottom], &mut SetupCtx { rng: &mut rng })?;
            levels.push((p, Blob::default()));
        }
        self.levels = levels;
        self.built_for = [h, w];
        Ok(())
    }
}

impl Layer for Spp {
    fn type_name(&self) -> &'static str {
        "SPP"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        self.build(bottom[0])?;
        let mut total = 0;
        for (p, out) in self.levels.iter_mut() {
            p.reshape(bottom, &mut [out])?;
            total += out.count_from(1);
        }
        let n = bottom[0].shape[0];
        if self.height == 1 {
            top[0].reshape(&self.levels[0].1.shape);
        } else {
            top[0].reshape(&[n, total]);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let n = bottom[0].shape[0];
        let width = top[0].count_from(1);
        let mut offset = 0;
        for (p, out) in self.levels.iter_mut() {
            p.forward(bottom, &mut [out], &mut [])?;
            let per = out.count_from(1);
            for i in 0..n {
                top[0].data[i * width + offset..i * width + offset + per]
                    .copy_from_slice(&out.data[i * per..(i + 1) * per]);
            }
            offset += per;
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if !down[0] {
            return Ok(());
        }
        let n = bottom[0].shape[0];
        let width = top[0].count_from(1);
        let mut offset = 0;
        for (p, out) in self.levels.iter_mut() {
            let per = out.count_from(1);
            for i in 0..n {
                out.diff[i * per..(i + 1) * per]
                    .copy_from_slice(&top[0].diff[i * width + offset..i * width + offset + per]);
            }
            p.backward(&[&*out], &[true], bottom, &mut [])?;
            offset += per;
        }
        Ok(())
    }
    fn reseed(&mut self, seed: u64) {
        for (p, _) in self.levels.iter_mut() {
            p.reseed(seed);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_param_from_yaml, Harness};
    use crate::Blob;

    #[test]
    fn levels_by_hand_max_and_ave() {
        // One 4x4 plane 0..16 (row-major). Level 0: the max 15 / the mean 7.5. Level 1: 2x2
        // bins of 2x2: maxima 5, 7, 13, 15; means 2.5, 4.5, 10.5, 12.5.
        let x = Blob::from_data(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect()).unwrap();
        let mut h = Harness::new(
            "type: SPP\nspp_param: { pyramid_height: 2 }",
            vec![x.clone()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![1, 5]);
        assert_eq!(h.top[0].data, vec![15.0, 5.0, 7.0, 13.0, 15.0]);
        let mut h = Harness::new(
            "type: SPP\nspp_param: { pyramid_height: 2, pool: AVE }",
            vec![x.clone()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].data, vec![7.5, 2.5, 4.5, 10.5, 12.5]);
        let mut h = Harness::new("type: SPP\nspp_param: { pyramid_height: 1 }", vec![x]).unwrap();
        h.forward().unwrap();
        assert_eq!(
            (h.top[0].shape.clone(), h.top[0].data.clone()),
            (vec![1, 1, 1, 1], vec![15.0])
        );
    }

    #[test]
    fn padded_levels_channels_and_gradients() {
        // 3x3 input, level 1: kernel 2, pad (4 - 3 + 1) / 2 = 1 -> bins cover rows {0}, {1, 2}.
        let x = Blob::from_data(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
        let mut h = Harness::new("type: SPP\nspp_param: { pyramid_height: 2 }", vec![x]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].data, vec![9.0, 1.0, 3.0, 7.0, 9.0]);
        // Two items, two channels: level blocks are channel-major within an item.
        check_layer_from(
            "type: SPP\nspp_param: { pyramid_height: 3 }",
            &[&[2, 2, 8, 8]],
        );
        check_layer_from(
            "type: SPP\nspp_param: { pyramid_height: 2, pool: AVE }",
            &[&[2, 3, 5, 6]],
        );
        let p = layer_param_from_yaml("type: SPP\nspp_param: { pyramid_height: 0 }").unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("pyramid_height"));
    }
}
