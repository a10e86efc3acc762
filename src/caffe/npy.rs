//! NumPy `.npy` files for `crema forward`: float32/float64 in C order in (read here, checking the
//! header's shape against the bytes that follow before allocating), float32 out (through the
//! `npyz` crate).

use crate::{Blob, Error, Result};
use npyz::WriterBuilder;
use std::path::Path;

/// Reads a float32 or float64 C-order `.npy` file into a blob of its shape.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Blob> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_npy(&bytes, &path.display().to_string())
}

/// The fields of an `.npy` header dictionary that matter here.
struct NpyHeader {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// The text of `'key': value` in a header dictionary, up to the next top-level comma.
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let at = dict
        .find(&format!("'{key}'"))
        .or_else(|| dict.find(&format!("\"{key}\"")))?;
    let rest = dict[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_header(dict: &str) -> std::result::Result<NpyHeader, String> {
    let missing = |k: &str| format!("the header has no `{k}` entry");
    let descr = dict_value(dict, "descr").ok_or_else(|| missing("descr"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let fortran = match dict_value(dict, "fortran_order").ok_or_else(|| missing("fortran_order"))? {
        "True" => true,
        "False" => false,
        v => return Err(format!("fortran_order is `{v}`, expected True or False")),
    };
    let tuple = dict_value(dict, "shape").ok_or_else(|| missing("shape"))?;
    let inner = tuple
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("shape `{tuple}` is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("shape `{tuple}` has a bad dimension `{d}`"))
        })
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    Ok(NpyHeader {
        descr,
        fortran,
        shape,
    })
}

/// Decodes `.npy` bytes (format versions 1 to 3) into a blob; `label` names the source.
pub fn decode_npy(bytes: &[u8], label: &str) -> Result<Blob> {
    let bad = |m: String| Error::format(label, m);
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or_else(|| bad("not a NumPy .npy file (no \\x93NUMPY magic)".into()))?;
    let (len, start) = match rest {
        [1, _, a, b, ..] => (u16::from_le_bytes([*a, *b]) as usize, 4),
        [2 | 3, _, a, b, c, d, ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 6),
        _ => return Err(bad("not a NumPy .npy file (unknown format version)".into())),
    };
    let header = rest
        .get(start..)
        .and_then(|r| r.get(..len))
        .ok_or_else(|| bad(format!("truncated .npy header ({len} bytes declared)")))?;
    let dict =
        std::str::from_utf8(header).map_err(|_| bad("the .npy header is not text".into()))?;
    let h = parse_header(dict).map_err(|m| bad(format!("bad .npy header: {m}")))?;
    if h.fortran {
        return Err(bad(
            "the array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
        ));
    }
    let (size, big) = match h.descr.as_str() {
        "<f4" | "=f4" => (4, false),
        ">f4" => (4, true),
        "<f8" | "=f8" => (8, false),
        ">f8" => (8, true),
        d => {
            return Err(bad(format!(
                "dtype `{d}` is not supported; use float32 or float64"
            )))
        }
    };
    let data = &rest[start + len..];
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|c| c.checked_mul(size) == Some(data.len()))
        .ok_or_else(|| {
            bad(format!(
                "shape {:?} of {size}-byte values does not match the {} data bytes",
                h.shape,
                data.len()
            ))
        })?;
    let values: Vec<f32> = if size == 4 {
        data.chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                (if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }) as f32
            })
            .collect()
    };
    debug_assert_eq!(values.len(), count);
    Blob::from_data(&h.shape, values)
}

/// Writes a blob's data as a float32 C-order `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, b: &Blob) -> Result<()> {
    let path = path.as_ref();
    let io = |e| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let shape: Vec<u64> = b.shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    w.extend(b.data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_float64() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let b = Blob::from_data(&[2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-7, 6.0]).unwrap();
        write_npy(&p, &b).unwrap();
        let r = read_npy(&p).unwrap();
        assert_eq!(
            (r.shape.clone(), r.data.clone()),
            (b.shape.clone(), b.data.clone())
        );
        let p64 = dir.path().join("b.npy");
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[3])
            .writer(std::fs::File::create(&p64).unwrap())
            .begin_nd()
            .unwrap();
        w.extend([0.5f64, 1.5, -2.0]).unwrap();
        w.finish().unwrap();
        assert_eq!(read_npy(&p64).unwrap().data, [0.5, 1.5, -2.0]);
        std::fs::write(&p64, b"\x93NUMPY garbage").unwrap();
        assert!(read_npy(&p64).is_err());
    }

    #[test]
    fn shapes_that_do_not_match_the_data_are_errors() {
        let npy = |dict: &str, data: &[u8]| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            b.extend_from_slice(data);
            b
        };
        let ok = npy(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
            &[63, 128, 0, 0, 64, 0, 0, 0],
        );
        assert_eq!(decode_npy(&ok, "a").unwrap().data, [1.0, 2.0]);
        // A header claiming 2^40 x 2^40 values once reached npyz's unchecked product.
        for shape in [
            "(1099511627776, 1099511627776)",
            "(1099511627776,)",
            "(3,)",
            "(2, x)",
        ] {
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            let e = decode_npy(&npy(&dict, &[0; 8]), "big.npy")
                .unwrap_err()
                .to_string();
            assert!(e.contains("big.npy") && e.contains("shape"), "{e}");
        }
        let s = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
            &[0, 0, 128, 63],
        );
        assert_eq!(decode_npy(&s, "s").unwrap().data, [1.0]);
    }
}
