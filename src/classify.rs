//! Classifying images with a trained net, the way Caffe's `classify.py` and
//! `cpp_classification` do it.
//!
//! The pipeline for one image: decode ([`crate::data::photo`], the same path `ImageData` takes,
//! so a net sees at classify time the pixels it was trained on) -> grey or RGB bytes as the net's
//! input channels require -> bilinear resize to the net's input size, or to a chosen size
//! followed by a center crop or Caffe's 10-crop oversampling ([`Preprocess`]) -> CHW floats,
//! channel swap (RGB to BGR by default), raw scale, mean subtraction ([`Mean`]), input scale
//! (the deploy net's own `transform_param` supplies the training scale and mean:
//! [`deploy_transform`]). [`Classifier`] batches images through a [`Net`], averages the crops of
//! each image and returns the output blob's values, from which [`top_k`] picks the best classes.

use crate::data::photo::{resize_bilinear, Image};
use crate::proto::{NetParameter, TransformationParameter};
use crate::{Blob, Error, Net, Result};
use std::path::Path;

/// Mean subtracted from every input, in the net's channel order and the raw-scaled range.
#[derive(Debug, Clone)]
pub enum Mean {
    /// One value per channel (or one for all channels).
    Values(Vec<f32>),
    /// A `C x H x W` mean image (from a `.binaryproto`); when its size differs from the net's
    /// input, its per-channel average is used instead, as `cpp_classification` does.
    Image(Blob),
}

impl Mean {
    /// Reads a Caffe mean file: a binary `BlobProto`, legacy `1 x C x H x W` or N-D `C x H x W`.
    pub fn from_binaryproto(path: impl AsRef<Path>) -> Result<Mean> {
        let m = crate::data::mean::read_mean(path)?;
        Ok(Mean::Image(Blob::from_data(&m.shape, m.data)?))
    }

    /// The per-pixel mean for a `channels x height x width` input, in CHW order.
    fn for_input(&self, channels: usize, height: usize, width: usize) -> Result<Vec<f32>> {
        let plane = height * width;
        let per_channel = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .flat_map(|&m| std::iter::repeat_n(m, plane))
                .collect()
        };
        match self {
            Mean::Values(v) if v.len() == 1 => Ok(vec![v[0]; channels * plane]),
            Mean::Values(v) => {
                crate::ensure!(
                    v.len() == channels,
                    "{} mean values for a net input with {channels} channels",
                    v.len()
                );
                Ok(per_channel(v))
            }
            Mean::Image(b) => {
                crate::ensure!(
                    b.shape[0] == channels,
                    "the mean image has {} channels, the net's input has {channels}",
                    b.shape[0]
                );
                if b.shape[1] == height && b.shape[2] == width {
                    Ok(b.data.clone())
                } else {
                    let n = (b.shape[1] * b.shape[2]) as f64;
                    let means: Vec<f32> = b
                        .data
                        .chunks_exact(b.shape[1] * b.shape[2])
                        .map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / n) as f32)
                        .collect();
                    Ok(per_channel(&means))
                }
            }
        }
    }
}

/// How the input is cut from the (resized) image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crops {
    /// One crop from the centre.
    Center,
    /// Caffe's 10 crops: the four corners and the centre, and their mirror images.
    Oversample,
}

/// Everything between a decoded image and the net's input blob.
#[derive(Debug, Clone)]
pub struct Preprocess {
    /// The net's input channels (1 or 3), height and width.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Size the image is resized to before cropping (`None`: straight to the input size).
    pub resize: Option<(usize, usize)>,
    pub crops: Crops,
    /// Input channel `i` of the net takes image channel `channel_swap[i]` (image channels are
    /// RGB, so the default `[2, 1, 0]` gives BGR). Ignored for grey inputs.
    pub channel_swap: Vec<usize>,
    /// Pixel values are `0..=raw_scale` (255 by default: Caffe's zoo weights expect 0..255).
    pub raw_scale: f32,
    pub mean: Option<Mean>,
    /// Multiplies the input after mean subtraction (Caffe's `input_scale` / `scale`).
    pub scale: f32,
}

impl Preprocess {
    /// Caffe's defaults for a net input of `channels x height x width`: resize to the input,
    /// BGR, 0..255, no mean, scale 1.
    pub fn new(channels: usize, height: usize, width: usize) -> Preprocess {
        Preprocess {
            channels,
            height,
            width,
            resize: None,
            crops: Crops::Center,
            channel_swap: vec![2, 1, 0],
            raw_scale: 255.0,
            mean: None,
            scale: 1.0,
        }
    }

    /// Takes the scale and the mean (`mean_file`, else `mean_value`) of a training transform:
    /// what the net was trained on, so classify feeds it the same values. Other fields
    /// (crop, mirror) are not used: the net's input size decides the crop.
    pub fn use_transform(&mut self, t: &TransformationParameter) -> Result<()> {
        crate::ensure!(
            t.mean_file.is_none() || t.mean_value.is_empty(),
            "transform_param: give mean_file or mean_value, not both"
        );
        if let Some(s) = t.scale {
            self.scale = s;
        }
        if let Some(f) = &t.mean_file {
            self.mean = Some(Mean::from_binaryproto(f)?);
        } else if !t.mean_value.is_empty() {
            self.mean = Some(Mean::Values(t.mean_value.clone()));
        }
        Ok(())
    }

    /// Number of crops (inputs) each image becomes.
    pub fn num_crops(&self) -> usize {
        match self.crops {
            Crops::Center => 1,
            Crops::Oversample => 10,
        }
    }

    /// Size of one input (`C x H x W`).
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Checks the settings against each other, and returns the mean laid out for the input.
    fn check(&self) -> Result<Vec<f32>> {
        crate::ensure!(
            self.channels == 1 || self.channels == 3,
            "the net's input has {} channels; crema classifies grey (1) or colour (3) images",
            self.channels
        );
        crate::ensure!(
            self.height > 0 && self.width > 0,
            "the net's input is {}x{}",
            self.height,
            self.width
        );
        if self.channels == 3 {
            let mut s = self.channel_swap.clone();
            s.sort_unstable();
            crate::ensure!(
                s == [0, 1, 2],
                "--channel-swap must be a permutation of 0,1,2, got {:?}",
                self.channel_swap
            );
        }
        if let Some((h, w)) = self.resize {
            crate::ensure!(
                h >= self.height && w >= self.width,
                "the resize size {h}x{w} is smaller than the net's input {}x{}; it must be at \
                 least as large to crop from",
                self.height,
                self.width
            );
        }
        match &self.mean {
            Some(m) => m.for_input(self.channels, self.height, self.width),
            None => Ok(vec![0.0; self.input_len()]),
        }
    }

    /// Turns an image into `num_crops()` net inputs (CHW each), written into `out`.
    pub fn apply(&self, img: &Image, out: &mut [f32]) -> Result<()> {
        let mean = self.check()?;
        self.apply_with_mean(img, &mean, out)
    }

    fn apply_with_mean(&self, img: &Image, mean: &[f32], out: &mut [f32]) -> Result<()> {
        crate::ensure!(
            img.channels == self.channels,
            "the image has {} channels, the net's input {}",
            img.channels,
            self.channels
        );
        let len = self.input_len();
        crate::ensure!(
            out.len() == len * self.num_crops(),
            "output buffer holds {} values, {} needed",
            out.len(),
            len * self.num_crops()
        );
        let (rh, rw) = self.resize.unwrap_or((self.height, self.width));
        let pix = resize_bilinear(img, rh, rw);
        let (ch, cw) = (self.height, self.width);
        let center = ((rh - ch) / 2, (rw - cw) / 2);
        let offsets: Vec<(usize, usize)> = match self.crops {
            Crops::Center => vec![center],
            Crops::Oversample => vec![
                (0, 0),
                (0, rw - cw),
                (rh - ch, 0),
                (rh - ch, rw - cw),
                center,
            ],
        };
        let c = self.channels;
        let swap: Vec<usize> = if c == 3 {
            self.channel_swap.clone()
        } else {
            vec![0]
        };
        let k = self.raw_scale / 255.0;
        let write = |dst: &mut [f32], (oy, ox): (usize, usize), mirror: bool| {
            for (ci, &src_c) in swap.iter().enumerate() {
                for y in 0..ch {
                    for x in 0..cw {
                        let sx = if mirror { cw - 1 - x } else { x };
                        let v = pix[((oy + y) * rw + ox + sx) * c + src_c];
                        let i = (ci * ch + y) * cw + x;
                        dst[i] = (v * k - mean[i]) * self.scale;
                    }
                }
            }
        };
        let mut chunks = out.chunks_exact_mut(len);
        for mirror in [false, true] {
            if mirror && self.crops == Crops::Center {
                break;
            }
            for &o in &offsets {
                if let Some(dst) = chunks.next() {
                    write(dst, o, mirror);
                }
            }
        }
        Ok(())
    }
}

/// A net ready to classify: its input blob, its output blob and the preprocessing.
pub struct Classifier {
    pub net: Net,
    pub input: String,
    pub output: String,
    pub pre: Preprocess,
    mean: Vec<f32>,
}

impl Classifier {
    /// Wraps a net whose single input blob is `N x C x H x W` (C = 1 or 3). `output` names the
    /// blob to report; `None` takes the net's only output. `configure` adjusts the default
    /// [`Preprocess`] (built from the input's shape); its error is returned.
    pub fn new(
        net: Net,
        output: Option<&str>,
        configure: impl FnOnce(&mut Preprocess) -> Result<()>,
    ) -> Result<Classifier> {
        let inputs = net.input_names();
        let input = match inputs.as_slice() {
            [one] => one.to_string(),
            [] => {
                return Err(Error::Invalid(
                    "the net has no input blob (a deploy net starts with an Input layer or \
                     `input:`)"
                        .into(),
                ))
            }
            many => {
                return Err(Error::Invalid(format!(
                    "the net has {} input blobs ({}); classify feeds images to a net with one",
                    many.len(),
                    many.join(", ")
                )))
            }
        };
        let shape = net
            .blob(&input)
            .map(|b| b.shape.clone())
            .unwrap_or_default();
        let [_, c, h, w] = shape[..] else {
            return Err(Error::Invalid(format!(
                "the input blob `{input}` is {}; images need N x C x H x W",
                crate::blob::shape_str(&shape)
            )));
        };
        let output = match output {
            Some(o) => {
                if net.blob(o).is_none() {
                    let names: Vec<&str> = net.blobs().map(|(n, _)| n).collect();
                    let hint = crate::spec::nearest(o, names.iter().copied())
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default();
                    return Err(Error::Invalid(format!("the net has no blob `{o}`{hint}")));
                }
                o.to_string()
            }
            None => match net.output_names().as_slice() {
                [one] => one.to_string(),
                many => {
                    return Err(Error::Invalid(format!(
                        "the net has {} outputs ({}); choose one with --output-blob",
                        many.len(),
                        many.join(", ")
                    )))
                }
            },
        };
        let mut pre = Preprocess::new(c, h, w);
        configure(&mut pre)?;
        let mean = pre.check()?;
        Ok(Classifier {
            net,
            input,
            output,
            pre,
            mean,
        })
    }

    /// Runs the images through the net in one batch (each image as `num_crops()` inputs) and
    /// returns, per image, the output blob's values averaged over its crops.
    pub fn classify(&mut self, images: &[Image]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let crops = self.pre.num_crops();
        let len = self.pre.input_len();
        let n = images.len() * crops;
        let mut data = vec![0.0f32; n * len];
        for (img, dst) in images.iter().zip(data.chunks_exact_mut(len * crops)) {
            self.pre.apply_with_mean(img, &self.mean, dst)?;
        }
        let shape = [n, self.pre.channels, self.pre.height, self.pre.width];
        let blob = self
            .net
            .blob_mut(&self.input)
            .ok_or_else(|| Error::Invalid(format!("no input blob `{}`", self.input)))?;
        blob.reshape(&shape);
        blob.data.copy_from_slice(&data);
        self.net.forward()?;
        let out = self
            .net
            .blob(&self.output)
            .ok_or_else(|| Error::Invalid(format!("no output blob `{}`", self.output)))?;
        crate::ensure!(
            !out.shape.is_empty() && out.shape[0] == n,
            "the output blob `{}` is {}, not one row per input ({n})",
            self.output,
            crate::blob::shape_str(&out.shape)
        );
        let k = out.count_from(1);
        Ok(out
            .data
            .chunks_exact(k * crops)
            .map(|rows| {
                let mut avg = vec![0.0f32; k];
                for row in rows.chunks_exact(k) {
                    for (a, &v) in avg.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                avg.iter_mut().for_each(|a| *a /= crops as f32);
                avg
            })
            .collect())
    }
}

/// The training transform a deploy net carries for its image input: the `transform_param` of
/// the layer that produces blob `input` (the `Input` layer), if it has one.
pub fn deploy_transform<'a>(
    param: &'a NetParameter,
    input: &str,
) -> Option<&'a TransformationParameter> {
    param
        .layer
        .iter()
        .find(|l| l.top.iter().any(|t| t == input))
        .and_then(|l| l.transform_param.as_ref())
}

/// The `k` largest values as `(index, value)`, best first (ties: lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, scores[i])).collect()
}

#[cfg(test)]
mod tests;
