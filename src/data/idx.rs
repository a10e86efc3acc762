//! MNIST-format IDX files (`train-images-idx3-ubyte`, gzipped or not; gzip is detected by its
//! magic bytes): a big-endian header (`0 0 type rank`, then `rank` u32 dimensions) and the values.

use super::{Dataset, Sample};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The values of an IDX file, widened once at load time.
#[derive(Debug, Clone, PartialEq)]
pub enum IdxValues {
    /// Type 0x08 (unsigned bytes), kept as read.
    U8(Vec<u8>),
    /// Every other type (i8, i16, i32, f32, f64), as f32.
    F32(Vec<f32>),
}

impl IdxValues {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            IdxValues::U8(v) => v.len(),
            IdxValues::F32(v) => v.len(),
        }
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Value `i` as f32.
    pub fn at(&self, i: usize) -> f32 {
        match self {
            IdxValues::U8(v) => v[i] as f32,
            IdxValues::F32(v) => v[i],
        }
    }
}

/// One IDX file: its dimensions (outermost = records) and values.
#[derive(Debug, Clone)]
pub struct IdxArray {
    /// Where it was read from.
    pub path: PathBuf,
    /// Dimensions; `dims[0]` is the number of records.
    pub dims: Vec<usize>,
    /// `dims.product()` values.
    pub values: IdxValues,
}

impl IdxArray {
    /// Number of records (`dims[0]`).
    pub fn records(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }
    /// Values per record.
    pub fn record_len(&self) -> usize {
        self.dims.iter().skip(1).product()
    }
}

/// Largest payload an IDX file may declare (4 GiB): a header claiming more is refused before
/// anything is read or allocated for it, and a gzipped file is never inflated past what its
/// header declares (so a gzip bomb stops at the first byte beyond the declared size).
pub const MAX_IDX_BYTES: usize = 1 << 32;

/// An IDX header: value type, bytes per value, dimensions, header length and payload length.
struct Header {
    ty: u8,
    dims: Vec<usize>,
    len: usize,
    payload: usize,
}

/// Parses the header at the start of `bytes` (which may hold only a prefix of the file) and
/// checks the payload size it declares against [`MAX_IDX_BYTES`].
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |m: String| Error::format(path, m);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "not an IDX file: {} byte(s), shorter than the 4-byte magic number",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "not an IDX file: magic number starts with {:02x} {:02x}, expected 00 00",
            bytes[0], bytes[1]
        )));
    }
    let (ty, rank) = (bytes[2], bytes[3] as usize);
    let size = match ty {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        t => {
            return Err(bad(format!(
                "unknown IDX value type 0x{t:02x} (expected 08, 09, 0B, 0C, 0D or 0E)"
            )))
        }
    };
    if rank == 0 {
        return Err(bad("IDX file has rank 0 (no dimensions)".into()));
    }
    let len = 4 + 4 * rank;
    let Some(raw_dims) = bytes.get(4..len) else {
        return Err(bad(format!(
            "truncated IDX header: rank {rank} needs {len} bytes, the file has {}",
            bytes.len()
        )));
    };
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let payload = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|c| c.checked_mul(size))
        .filter(|&c| c <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            bad(format!(
                "IDX dimensions {dims:?} declare more than {} GiB of values",
                MAX_IDX_BYTES >> 30
            ))
        })?;
    Ok(Header {
        ty,
        dims,
        len,
        payload,
    })
}

/// Inflates gzipped IDX bytes, reading no further than one byte past the size its header
/// declares.
fn gunzip_idx(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let corrupt =
        |e: std::io::Error| Error::format(path, format!("corrupt or truncated gzip data: {e}"));
    let mut z = flate2::read::MultiGzDecoder::new(raw);
    // The longest header: the magic number and 255 dimensions.
    let mut out = Vec::new();
    (&mut z)
        .take(4 + 4 * 255)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    let h = parse_header(path, &out)?;
    let want = (h.len + h.payload).saturating_add(1);
    let more = want.saturating_sub(out.len()) as u64;
    z.take(more).read_to_end(&mut out).map_err(corrupt)?;
    out.truncate(want);
    Ok(out)
}

/// Reads an IDX file (gzipped or not). Errors name the file and what is wrong with it.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_idx(path, &raw)
}

/// Parses the bytes of an IDX file, gunzipping them first when they start with the gzip magic
/// bytes; `path` is only used in messages.
pub fn decode_idx(path: &Path, raw: &[u8]) -> Result<IdxArray> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        parse_idx(path, &gunzip_idx(path, raw)?)
    } else {
        parse_idx(path, raw)
    }
}

/// Parses IDX bytes; `path` is only used in messages.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    let bad = |m: String| Error::format(path, m);
    let Header {
        ty,
        dims,
        len: header,
        payload: count,
    } = parse_header(path, bytes)?;
    let payload = &bytes[header..];
    if payload.len() < count {
        let per_record = (count / dims[0].max(1)).max(1);
        return Err(bad(format!(
            "truncated IDX data: dimensions {dims:?} need {count} bytes after the header, the \
             file has {} (record {} of {} is incomplete)",
            payload.len(),
            payload.len() / per_record,
            dims[0]
        )));
    }
    if payload.len() > count {
        return Err(bad(format!(
            "IDX data goes on past the {count} bytes its dimensions {dims:?} declare ({} more \
             byte(s) read); the dimensions do not match the data",
            payload.len() - count
        )));
    }
    let values = match ty {
        0x08 => IdxValues::U8(payload.to_vec()),
        0x09 => IdxValues::F32(payload.iter().map(|&b| b as i8 as f32).collect()),
        0x0B => IdxValues::F32(
            payload
                .chunks_exact(2)
                .map(|c| i16::from_be_bytes([c[0], c[1]]) as f32)
                .collect(),
        ),
        0x0C => IdxValues::F32(
            payload
                .chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
        ),
        0x0D => IdxValues::F32(
            payload
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => IdxValues::F32(
            payload
                .chunks_exact(8)
                .map(|c| {
                    f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        ),
    };
    Ok(IdxArray {
        path: path.to_path_buf(),
        dims,
        values,
    })
}

/// Writes unsigned-byte values as an uncompressed IDX file.
pub fn write_idx_u8(path: impl AsRef<Path>, dims: &[usize], values: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let mut out = vec![0u8, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(values);
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// An IDX image file with an optional IDX label file, as a [`Dataset`]. Records of rank-3 files
/// (`N x H x W`) are `1 x H x W` samples; rank 4 is `N x C x H x W`; rank 2 is `N x D` (`1x1xD`).
pub struct IdxDataset {
    images: IdxArray,
    labels: Option<IdxArray>,
    shape: [usize; 3],
}

impl IdxDataset {
    /// Reads both files and checks that they agree on the number of records.
    pub fn open(images: impl AsRef<Path>, labels: Option<&Path>) -> Result<Self> {
        let images = read_idx(images)?;
        let labels = labels.map(read_idx).transpose()?;
        Self::from_arrays(images, labels)
    }

    /// An image array with an optional label array, checked to agree on the number of records.
    pub fn from_arrays(images: IdxArray, labels: Option<IdxArray>) -> Result<Self> {
        let d = &images.dims;
        let shape = match d.len() {
            2 => [1, 1, d[1]],
            3 => [1, d[1], d[2]],
            4 => [d[1], d[2], d[3]],
            r => {
                return Err(Error::format(
                    &images.path,
                    format!(
                        "an IDX image file needs rank 2, 3 or 4 (N x ...), this one has rank {r} \
                         (dimensions {d:?}); is it a label file?"
                    ),
                ))
            }
        };
        let labels = match labels {
            Some(l) => {
                let p = &l.path;
                if l.dims.len() != 1 && l.record_len() != 1 {
                    return Err(Error::format(
                        p,
                        format!(
                            "an IDX label file holds one value per record (rank 1), this one has \
                             dimensions {:?}",
                            l.dims
                        ),
                    ));
                }
                if l.records() != images.records() {
                    return Err(Error::format(
                        p,
                        format!(
                            "{} labels for {} images in {}",
                            l.records(),
                            images.records(),
                            images.path.display()
                        ),
                    ));
                }
                Some(l)
            }
            None => None,
        };
        Ok(IdxDataset {
            images,
            labels,
            shape,
        })
    }

    /// The image file's dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.images.dims
    }
}

impl Dataset for IdxDataset {
    fn len(&self) -> usize {
        self.images.records()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let n = self.images.record_len();
        let start = index * n;
        let data = match &self.images.values {
            IdxValues::U8(v) => v[start..start + n].iter().map(|&b| b as f32).collect(),
            IdxValues::F32(v) => v[start..start + n].to_vec(),
        };
        let label = self
            .labels
            .as_ref()
            .map(|l| l.values.at(index) as i32)
            .unwrap_or(0);
        Ok(Sample {
            channels: self.shape[0],
            height: self.shape[1],
            width: self.shape[2],
            data,
            label,
        })
    }

    fn describe(&self) -> String {
        self.images.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;
    use std::io::Write;

    const IMAGES: &str = "../shared/data/mnist/t10k-first1000-images-idx3-ubyte";
    const LABELS: &str = "../shared/data/mnist/t10k-first1000-labels-idx1-ubyte";

    fn need(p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        assert!(p.exists(), "test data {} is missing", p.display());
        p
    }

    #[test]
    fn reads_real_mnist_plain_and_gzipped() {
        let ds = IdxDataset::open(need(IMAGES), Some(&need(LABELS))).unwrap();
        assert_eq!(ds.len(), 1000);
        assert_eq!(ds.dims(), &[1000, 28, 28]);
        let s = ds.get(0).unwrap();
        assert_eq!(s.shape(), [1, 28, 28]);
        // The first MNIST test digits are 7, 2, 1, 0, 4.
        let labels: Vec<i32> = (0..5).map(|i| ds.get(i).unwrap().label).collect();
        assert_eq!(labels, vec![7, 2, 1, 0, 4]);
        assert_eq!(s.data.iter().cloned().fold(0.0, f32::max), 255.0);

        let dir = tempfile::tempdir().unwrap();
        let gz = |src: &str, name: &str| {
            let p = dir.path().join(name);
            let f = std::fs::File::create(&p).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(&std::fs::read(src).unwrap()).unwrap();
            e.finish().unwrap();
            p
        };
        let gi = gz(IMAGES, "i.gz");
        let gl = gz(LABELS, "l.gz");
        let dz = IdxDataset::open(&gi, Some(&gl)).unwrap();
        for i in [0, 1, 999] {
            assert_eq!(dz.get(i).unwrap(), ds.get(i).unwrap());
        }
    }

    #[test]
    fn corrupt_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(need(IMAGES)).unwrap();
        let t = dir.path().join("trunc-idx3");
        std::fs::write(&t, &bytes[..16 + 784 * 10 + 5]).unwrap();
        let e = err_text(read_idx(&t));
        assert!(
            e.contains("trunc-idx3") && e.contains("record 10 of 1000"),
            "{e}"
        );

        let h = dir.path().join("short");
        std::fs::write(&h, &bytes[..7]).unwrap();
        assert!(err_text(read_idx(&h)).contains("truncated IDX header"));

        let j = dir.path().join("photo.idx");
        std::fs::write(&j, b"\x89PNG\r\n\x1a\n").unwrap();
        assert!(err_text(read_idx(&j)).contains("not an IDX file"));

        // A truncated gzip stream.
        let g = dir.path().join("cut.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        let z = e.finish().unwrap();
        std::fs::write(&g, &z[..z.len() / 2]).unwrap();
        let m = err_text(read_idx(&g));
        assert!(m.contains("cut.gz") && m.contains("gzip"), "{m}");

        // Labels that do not match.
        let m = err_text(IdxDataset::open(need(IMAGES), Some(&need(IMAGES))));
        assert!(m.contains("label file"), "{m}");
        let l = dir.path().join("few-labels");
        write_idx_u8(&l, &[3], &[1, 2, 3]).unwrap();
        let m = err_text(IdxDataset::open(need(IMAGES), Some(&l)));
        assert!(m.contains("3 labels for 1000 images"), "{m}");
    }

    #[test]
    fn gzip_bombs_and_huge_headers_are_refused_before_inflating() {
        // 10 declared bytes followed by 64 MiB of zeros: inflation stops one byte past the 10.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&[0, 0, 8, 1, 0, 0, 0, 10]).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let m = err_text(decode_idx(Path::new("bomb.gz"), &bomb));
        assert!(
            m.contains("bomb.gz") && m.contains("goes on past the 10 bytes"),
            "{m}"
        );
        // A header declaring 2^32 x 2^32 x 2^8 values.
        let huge = [
            0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 1, 0,
        ];
        for bytes in [huge.to_vec(), {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&huge).unwrap();
            e.finish().unwrap()
        }] {
            let m = err_text(decode_idx(Path::new("huge"), &bytes));
            assert!(m.contains("more than 4 GiB"), "{m}");
        }
    }

    #[test]
    fn wider_types_and_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f32");
        let mut b = vec![0u8, 0, 0x0D, 2, 0, 0, 0, 2, 0, 0, 0, 1];
        b.extend_from_slice(&1.5f32.to_be_bytes());
        b.extend_from_slice(&(-2.0f32).to_be_bytes());
        std::fs::write(&p, b).unwrap();
        let a = read_idx(&p).unwrap();
        assert_eq!(a.values, IdxValues::F32(vec![1.5, -2.0]));
        let q = dir.path().join("u8");
        write_idx_u8(&q, &[2, 2], &[1, 2, 3, 4]).unwrap();
        let ds = IdxDataset::open(&q, None).unwrap();
        assert_eq!(ds.get(1).unwrap().data, vec![3.0, 4.0]);
    }
}
