//! The one way crema turns a photo into pixels, shared by `ImageData`, encoded `Datum`s,
//! `crema convert` and `crema classify`, so a net sees the same values at classify time as in
//! training: decode ([`decode`], any format the `image` crate reads, within [`DecodeLimits`]
//! against decompression bombs) to grey or RGB bytes as OpenCV's `imread` gives them, then
//! bilinear resize with pixel centres aligned ([`resize_bilinear`]: OpenCV's `INTER_LINEAR`,
//! skimage's order 1), then channel planes in the net's order ([`Image::planes`]).

use crate::{Error, Result};
use std::path::Path;

/// Limits applied while decoding, so that a file claiming a huge size is rejected before any
/// pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest amount of memory the decoder may allocate (and largest file read), in bytes.
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
        let need = height
            .checked_mul(width)
            .and_then(|n| n.checked_mul(channels));
        crate::ensure!(
            need == Some(data.len()),
            "{height}x{width}x{channels} image needs {} bytes, got {}",
            need.map_or("too many".to_string(), |n| n.to_string()),
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

    /// The image resized (see [`resize_bilinear`]) to `height x width` and laid out as planes
    /// (CHW): plane `i` is image channel `order[i]` (`[2, 1, 0]` gives Caffe's BGR; a grey image
    /// takes `[0]`).
    pub fn planes(&self, height: usize, width: usize, order: &[usize]) -> Vec<f32> {
        let pix = resize_bilinear(self, height, width);
        let c = self.channels;
        let plane = height * width;
        let mut out = vec![0f32; order.len() * plane];
        for (dst, &src) in out.chunks_exact_mut(plane).zip(order) {
            for (d, px) in dst.iter_mut().zip(pix.chunks_exact(c)) {
                *d = px[src];
            }
        }
        out
    }
}

/// Grey from RGB with OpenCV's fixed-point BT.601 weights (0.299 R + 0.587 G + 0.114 B).
fn luma(p: &[u8]) -> u8 {
    let v = (p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + 8192) >> 14;
    v.min(255) as u8
}

/// Decodes an image file (see [`decode`]). Files larger than `limits.max_alloc` are refused
/// before they are read.
pub fn read(path: impl AsRef<Path>, color: Option<bool>, limits: DecodeLimits) -> Result<Image> {
    let path = path.as_ref();
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > limits.max_alloc {
        return Err(Error::format(
            path,
            format!(
                "the file has {len} bytes, more than the {} MiB an image may take",
                limits.max_alloc >> 20
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, color, limits, &path.display().to_string())
}

/// Decodes an image in memory into 8-bit channels as OpenCV's `imread` does for Caffe: colour
/// (`Some(true)`: 3 channels, RGB), grey (`Some(false)`), or as stored (`None`). Alpha is
/// dropped, 16-bit samples are reduced to 8 bits, colour becomes grey with BT.601 weights and
/// grey is replicated to colour. The format is recognised from the contents (the extension of
/// `what`, the file's name in messages, only as a fallback); GIFs give their first frame.
pub fn decode(
    bytes: &[u8],
    color: Option<bool>,
    limits: DecodeLimits,
    what: &str,
) -> Result<Image> {
    let bad = |m: String| Error::format(what, m);
    // JPEG decoders fill a cut-off file with grey: the last scan (after the last SOS marker,
    // which cannot occur inside entropy-coded data) must be followed by an end-of-image marker.
    if bytes.starts_with(&[0xFF, 0xD8]) {
        if let Some(sos) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) {
            if !bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]) {
                return Err(bad(
                    "truncated JPEG (no end-of-image marker after the last scan)".into(),
                ));
            }
        }
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(what, e))?;
    if reader.format().is_none() {
        match image::ImageFormat::from_path(what) {
            Ok(f) => reader.set_format(f),
            Err(_) => {
                return Err(bad(
                    "not an image in a format crema reads (JPEG, PNG, BMP, GIF, TIFF, WebP, PNM)"
                        .into(),
                ))
            }
        }
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
    if w == 0 || h == 0 {
        return Err(bad("the image has no pixels".into()));
    }
    let stored_color = img.color().has_color();
    let (channels, data) = match (color.unwrap_or(stored_color), stored_color) {
        (false, false) => (1, img.into_luma8().into_raw()),
        (false, true) => (1, img.into_rgb8().chunks_exact(3).map(luma).collect()),
        (true, _) => (3, img.into_rgb8().into_raw()),
    };
    Image::new(h, w, channels, data)
}

/// Bilinear resize with pixel centres aligned (OpenCV's `INTER_LINEAR`, skimage's order 1),
/// returning interleaved floats (not rounded).
pub fn resize_bilinear(img: &Image, height: usize, width: usize) -> Vec<f32> {
    let c = img.channels;
    if img.height == height && img.width == width {
        return img.data.iter().map(|&v| v as f32).collect();
    }
    let mut out = vec![0.0f32; height * width * c];
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

#[cfg(test)]
mod tests;
