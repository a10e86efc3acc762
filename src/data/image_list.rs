//! Images as Caffe sees them (decoded to BGR or grey, 0-255, CHW; optional bilinear resize to
//! `new_height x new_width`, through [`super::photo`], the same path `crema classify` takes), and
//! Caffe's list files (`path label` per line, the label after the last space).

use super::photo::{self, DecodeLimits};
use super::{Dataset, Sample};
use crate::{Error, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use std::path::{Path, PathBuf};

/// How to decode: colour (`Some(true)`, 3 channels BGR), grey (`Some(false)`), or as stored
/// (`None`: grey files stay grey), and an optional `(height, width)` to resize to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decode {
    /// Channel mode.
    pub color: Option<bool>,
    /// Resize target `(height, width)`.
    pub resize: Option<(usize, usize)>,
}

/// A decoded photo as a sample: resized as `opts` asks, channel planes in Caffe's BGR order.
fn to_sample(img: &photo::Image, opts: Decode) -> Result<Sample> {
    let (h, w) = opts.resize.unwrap_or((img.height, img.width));
    crate::ensure!(
        h > 0 && w > 0,
        "cannot resize an image to {h}x{w}; both sizes must be positive"
    );
    let order: &[usize] = if img.channels == 3 { &[2, 1, 0] } else { &[0] };
    Ok(Sample {
        channels: img.channels,
        height: h,
        width: w,
        data: img.planes(h, w, order),
        label: 0,
    })
}

/// Decodes an in-memory image (any format [`photo::decode`] reads, within its default limits);
/// `what` names the file or record in errors.
pub fn decode_image(bytes: &[u8], opts: Decode, what: &str) -> Result<Sample> {
    let img = photo::decode(bytes, opts.color, DecodeLimits::default(), what)?;
    to_sample(&img, opts)
}

/// Reads and decodes an image file.
pub fn read_image(path: impl AsRef<Path>, opts: Decode) -> Result<Sample> {
    let img = photo::read(path, opts.color, DecodeLimits::default())?;
    to_sample(&img, opts)
}

/// Encodes a sample (BGR or grey, values clamped to 0-255) as PNG (`"png"`) or JPEG (`"jpg"`).
pub fn encode_image(s: &Sample, format: &str) -> Result<Vec<u8>> {
    let (h, w) = (s.height, s.width);
    let px = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let img = match s.channels {
        1 => DynamicImage::ImageLuma8(
            GrayImage::from_raw(w as u32, h as u32, s.data.iter().map(|&v| px(v)).collect())
                .ok_or_else(|| Error::Invalid("image buffer size mismatch".into()))?,
        ),
        3 => {
            let mut raw = vec![0u8; 3 * h * w];
            for i in 0..h * w {
                raw[3 * i] = px(s.data[2 * h * w + i]);
                raw[3 * i + 1] = px(s.data[h * w + i]);
                raw[3 * i + 2] = px(s.data[i]);
            }
            DynamicImage::ImageRgb8(
                RgbImage::from_raw(w as u32, h as u32, raw)
                    .ok_or_else(|| Error::Invalid("image buffer size mismatch".into()))?,
            )
        }
        c => {
            return Err(Error::Invalid(format!(
                "cannot encode a {c}-channel image (1 or 3)"
            )))
        }
    };
    let fmt = match format.to_ascii_lowercase().as_str() {
        "png" => image::ImageFormat::Png,
        "jpg" | "jpeg" => image::ImageFormat::Jpeg,
        f => {
            return Err(Error::Invalid(format!(
                "unknown image encoding `{f}`; use png or jpg"
            )))
        }
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, fmt)
        .map_err(|e| Error::Invalid(format!("cannot encode image: {e}")))?;
    Ok(out.into_inner())
}

/// Writes a sample as a PNG file.
pub fn write_png(path: impl AsRef<Path>, s: &Sample) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_image(s, "png")?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Parses a Caffe list file: one `path label` per line (the label after the last space, so paths
/// may hold spaces); blank lines are skipped.
pub fn read_list(path: impl AsRef<Path>) -> Result<Vec<(String, i32)>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (file, label) = line.rsplit_once(char::is_whitespace).ok_or_else(|| {
            Error::format(
                path,
                format!("line {}: expected `path label`, got `{line}`", i + 1),
            )
        })?;
        let label: i32 = label.parse().map_err(|_| {
            Error::format(
                path,
                format!("line {}: label `{label}` is not an integer", i + 1),
            )
        })?;
        out.push((file.trim_end().to_string(), label));
    }
    Ok(out)
}

/// A list file's images as a [`Dataset`] (`root_folder` is prepended to every path as a plain
/// string, like Caffe).
pub struct ImageListDataset {
    list: PathBuf,
    root: String,
    entries: Vec<(String, i32)>,
    decode: Decode,
}

impl ImageListDataset {
    /// Reads the list; images are decoded on `get`.
    pub fn open(list: impl AsRef<Path>, root_folder: &str, decode: Decode) -> Result<Self> {
        let list = list.as_ref().to_path_buf();
        let entries = read_list(&list)?;
        if entries.is_empty() {
            return Err(Error::format(&list, "the image list is empty"));
        }
        Ok(ImageListDataset {
            list,
            root: root_folder.to_string(),
            entries,
            decode,
        })
    }

    /// The `(path, label)` entries, in list order.
    pub fn entries(&self) -> &[(String, i32)] {
        &self.entries
    }

    /// Full path of entry `i`.
    pub fn path_of(&self, i: usize) -> String {
        format!("{}{}", self.root, self.entries[i].0)
    }
}

impl Dataset for ImageListDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let p = self.path_of(index);
        let mut s = read_image(&p, self.decode).map_err(|e| match e {
            Error::Io { path, source } => Error::Format {
                path: self.list.display().to_string(),
                message: format!("line {}: cannot read image {path}: {source}", index + 1),
            },
            other => other,
        })?;
        s.label = self.entries[index].1;
        Ok(s)
    }

    fn costly(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.list.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

    const IMAGES: &str = "../shared/data/images/";

    #[test]
    fn decodes_real_photos_as_bgr() {
        let p = format!("{IMAGES}chelsea.png");
        assert!(Path::new(&p).exists(), "{p} is missing");
        let s = read_image(&p, Decode::default()).unwrap();
        assert_eq!(s.channels, 3);
        let raw = image::open(&p).unwrap().to_rgb8();
        assert_eq!(
            (s.width, s.height),
            (raw.width() as usize, raw.height() as usize)
        );
        let (x, y) = (100, 50);
        let px = raw.get_pixel(x, y).0;
        let i = y as usize * s.width + x as usize;
        let hw = s.height * s.width;
        assert_eq!(
            [s.data[i], s.data[hw + i], s.data[2 * hw + i]],
            [px[2] as f32, px[1] as f32, px[0] as f32],
            "planes are B, G, R"
        );
        let g = read_image(
            &p,
            Decode {
                color: Some(false),
                resize: Some((32, 48)),
            },
        )
        .unwrap();
        assert_eq!(g.shape(), [1, 32, 48]);
        let j = read_image(
            format!("{IMAGES}rocket.jpg"),
            Decode {
                color: Some(true),
                resize: Some((20, 10)),
            },
        )
        .unwrap();
        assert_eq!(j.shape(), [3, 20, 10]);
    }

    #[test]
    fn png_roundtrip_is_exact() {
        let s = read_image(format!("{IMAGES}coffee.png"), Decode::default()).unwrap();
        let b = encode_image(&s, "png").unwrap();
        assert_eq!(decode_image(&b, Decode::default(), "x").unwrap(), s);
    }

    #[test]
    fn list_parsing_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("list.txt");
        std::fs::write(&l, "cat.jpg 281\n\nmy photo.png 3\n").unwrap();
        assert_eq!(
            read_list(&l).unwrap(),
            vec![("cat.jpg".into(), 281), ("my photo.png".into(), 3)]
        );
        std::fs::write(&l, "cat.jpg x\n").unwrap();
        let e = err_text(read_list(&l));
        assert!(e.contains("list.txt") && e.contains("line 1"), "{e}");

        // A truncated image and a missing one name the file and the list line.
        let bytes = std::fs::read(format!("{IMAGES}cat.jpg")).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
        let e = err_text(read_image(&cut, Decode::default()));
        assert!(e.contains("cut.jpg"), "{e}");
        std::fs::write(&l, "cut.jpg 1\nmissing.png 2\n").unwrap();
        let root = format!("{}/", dir.path().display());
        let ds = ImageListDataset::open(&l, &root, Decode::default()).unwrap();
        assert!(err_text(ds.get(0)).contains("cut.jpg"));
        let e = err_text(ds.get(1));
        assert!(e.contains("missing.png") && e.contains("line 2"), "{e}");
    }
}
