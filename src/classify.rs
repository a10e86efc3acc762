//! Classifying images with a trained net, the way Caffe's `classify.py` and
//! `cpp_classification` do it.
//!
//! The pipeline for one image: decode ([`decode_image`], any format the `image` crate reads,
//! with [`DecodeLimits`] against decompression bombs) -> grey or RGB bytes as the net's input
//! channels require -> bilinear resize to the net's input size, or to a chosen size followed by a
//! center crop or Caffe's 10-crop oversampling ([`Preprocess`]) -> CHW floats, channel swap (RGB
//! to BGR by default), raw scale, mean subtraction ([`Mean`]), input scale. [`Classifier`] batches
//! images through a [`Net`], averages the crops of each image and returns the output blob's
//! values, from which [`top_k`] picks the best classes and [`load_labels`] names them.

use crate::{Blob, Error, Net, Result};
use std::path::{Path, PathBuf};

/// Limits applied while decoding, so that a file claiming a huge size is rejected before any
/// pixel buffer is allocated.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest amount of memory the decoder may allocate, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 16384,
            max_alloc: 512 << 20,
        }
    }
}

/// A decoded 8-bit image, rows of interleaved channels (`h x w x c`); colour images are RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image {
    /// An image from raw interleaved bytes.
    pub fn new(height: usize, width: usize, channels: usize, data: Vec<u8>) -> Result<Image> {
        crate::ensure!(
            channels == 1 || channels == 3,
            "an image has 1 or 3 channels, not {channels}"
        );
        crate::ensure!(
            data.len() == height * width * channels,
            "{height}x{width}x{channels} image needs {} bytes, got {}",
            height * width * channels,
            data.len()
        );
        Ok(Image {
            height,
            width,
            channels,
            data,
        })
    }

    fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * self.channels + c] as f32
    }
}

/// Decodes an image file into `channels` (1: grey, 3: RGB) 8-bit channels, as OpenCV's `imread`
/// does for Caffe: alpha is dropped, 16-bit samples are reduced to 8 bits, colour becomes grey
/// with ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B) and grey is replicated to colour.
/// The format is recognised from the file's contents (its extension only as a fallback); GIFs
/// give their first frame.
pub fn decode_image(path: &Path, channels: usize, limits: DecodeLimits) -> Result<Image> {
    crate::ensure!(
        channels == 1 || channels == 3,
        "the net's input has {channels} channels; images give 1 (grey) or 3 (colour)"
    );
    let bad = |m: String| Error::format(path, m);
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        return Err(bad(
            "not an image in a format crema reads (JPEG, PNG, BMP, GIF, TIFF, WebP, PNM)".into(),
        ));
    }
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(e) => bad(format!(
            "image too large to decode ({e}; the limits are {} pixels a side and {} MiB)",
            limits.max_side,
            limits.max_alloc >> 20
        )),
        e => bad(format!("cannot decode image: {e}")),
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    crate::ensure!(w > 0 && h > 0, "{}: the image is empty", path.display());
    let grey_source = !img.color().has_color();
    let data = match (channels, grey_source) {
        (1, true) => img.into_luma8().into_raw(),
        (1, false) => img
            .into_rgb8()
            .into_raw()
            .chunks_exact(3)
            .map(|p| {
                let v = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                v.round().clamp(0.0, 255.0) as u8
            })
            .collect(),
        _ => img.into_rgb8().into_raw(),
    };
    Image::new(h, w, channels, data)
}

/// Bilinear resize with pixel centres aligned (OpenCV's `INTER_LINEAR`, skimage's order 1),
/// returning interleaved floats.
pub fn resize_bilinear(img: &Image, height: usize, width: usize) -> Vec<f32> {
    let c = img.channels;
    let mut out = vec![0.0f32; height * width * c];
    if img.height == height && img.width == width {
        for (o, &v) in out.iter_mut().zip(&img.data) {
            *o = v as f32;
        }
        return out;
    }
    let taps = |dst: usize, src: usize| -> Vec<(usize, usize, f32)> {
        let scale = src as f32 / dst as f32;
        (0..dst)
            .map(|d| {
                let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(src - 1);
                let i1 = (i0 + 1).min(src - 1);
                let f = if i0 == src - 1 { 0.0 } else { s - i0 as f32 };
                (i0, i1, f)
            })
            .collect()
    };
    let ys = taps(height, img.height);
    let xs = taps(width, img.width);
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            for ch in 0..c {
                let top = img.at(y0, x0, ch) * (1.0 - fx) + img.at(y0, x1, ch) * fx;
                let bot = img.at(y1, x0, ch) * (1.0 - fx) + img.at(y1, x1, ch) * fx;
                out[(y * width + x) * c + ch] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}

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
    /// [`Preprocess`] (built from the input's shape).
    pub fn new(
        net: Net,
        output: Option<&str>,
        configure: impl FnOnce(&mut Preprocess),
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
        configure(&mut pre);
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

/// The `k` largest values as `(index, value)`, best first (ties: lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, scores[i])).collect()
}

/// Whether a token looks like a class id that may precede a label: `n02123045`, `7`, `7:`.
fn is_class_id(t: &str) -> bool {
    let t = t.strip_suffix(':').unwrap_or(t);
    let digits = t
        .strip_prefix(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(t);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a labels file: one class per line, in class order, with an optional leading id
/// (`n02123045 tabby, tabby cat` gives `tabby, tabby cat`). Trailing blank lines are ignored.
pub fn parse_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            match l.split_once(char::is_whitespace) {
                Some((id, rest)) if is_class_id(id) && !rest.trim().is_empty() => {
                    rest.trim().to_string()
                }
                _ => l.to_string(),
            }
        })
        .collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    labels
}

/// Reads a labels file (see [`parse_labels`]).
pub fn load_labels(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let labels = parse_labels(&text);
    if labels.is_empty() {
        return Err(Error::format(path, "the labels file is empty"));
    }
    Ok(labels)
}

/// File extensions taken as images when a directory is classified.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "png", "bmp", "gif", "tif", "tiff", "webp", "pnm", "pbm", "pgm", "ppm",
];

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands the command line's image arguments: a directory gives its image files (by
/// extension, sorted, not recursive); a `.txt` file is a list with one image path per line
/// (an optional trailing integer label is ignored; relative paths resolve against the list's
/// directory; blank lines and `#` comments are skipped); anything else is an image path.
/// A directory or list that cannot be read gives an `Err` entry in place of its images.
pub fn expand_inputs(args: &[PathBuf]) -> Vec<(PathBuf, Result<()>)> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            match std::fs::read_dir(a) {
                Ok(rd) => {
                    let mut files: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file() && has_image_extension(p))
                        .collect();
                    files.sort();
                    out.extend(files.into_iter().map(|p| (p, Ok(()))));
                }
                Err(e) => out.push((a.clone(), Err(Error::io(a, e)))),
            }
        } else if a
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
        {
            match std::fs::read_to_string(a) {
                Ok(text) => {
                    let dir = a.parent().unwrap_or(Path::new(""));
                    for line in text.lines() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let path = match line.rsplit_once(char::is_whitespace) {
                            Some((p, label)) if label.parse::<i64>().is_ok() => p.trim_end(),
                            _ => line,
                        };
                        out.push((dir.join(path), Ok(())));
                    }
                }
                Err(e) => out.push((a.clone(), Err(Error::io(a, e)))),
            }
        } else {
            out.push((a.clone(), Ok(())));
        }
    }
    out
}

#[cfg(test)]
mod tests;
