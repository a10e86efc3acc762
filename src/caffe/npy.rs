//! NumPy `.npy` files for `crema forward` (through the `npyz` crate): float32/float64 in C
//! order in, float32 out.

use crate::{Blob, Error, Result};
use npyz::WriterBuilder;
use std::path::Path;

/// Reads a float32 or float64 C-order `.npy` file into a blob of its shape.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Blob> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::format(path, m);
    let f = npyz::NpyFile::new(bytes.as_slice())
        .map_err(|e| bad(format!("not a NumPy .npy file: {e}")))?;
    if f.order() != npyz::Order::C {
        return Err(bad(
            "the array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
        ));
    }
    let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    let dtype = match f.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(bad(format!("unsupported dtype {}", other.descr()))),
    };
    let data: Vec<f32> = match &dtype[1..] {
        "f4" => f
            .into_vec::<f32>()
            .map_err(|e| bad(format!("cannot read the float32 data: {e}")))?,
        "f8" => f
            .into_vec::<f64>()
            .map_err(|e| bad(format!("cannot read the float64 data: {e}")))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        _ => {
            return Err(bad(format!(
                "dtype `{dtype}` is not supported; use float32 or float64"
            )))
        }
    };
    Blob::from_data(&shape, data).map_err(|e| bad(e.to_string()))
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
}
