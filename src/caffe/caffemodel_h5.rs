//! Weights as a `.caffemodel.h5` file, Caffe's HDF5 layout (`Net::ToHDF5` /
//! `CopyTrainedLayersFromHDF5`): group `data`, one group per layer named like the layer, one
//! float32 dataset per learnable blob named by its index (`0` the weights, `1` the bias), in the
//! blob's shape; with `snapshot_diff` a group `diff` of the same form. A `/` in a layer name
//! nests groups (`inception_3a/1x1`); reading walks the nesting back into the name.

use crate::data::hdf5 as h5;
use crate::proto::{BlobProto, BlobShape, LayerParameter, NetParameter};
use crate::{Error, Result};
use std::path::Path;

/// Whether `path` is named like an HDF5 weights file (`.h5` or `.hdf5`).
pub fn is_h5_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5"))
}

/// Whether `bytes` start with the HDF5 signature.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89HDF\r\n\x1a\n")
}

fn h5_err(path: &Path, e: hdf5::Error) -> Error {
    Error::format(path, e.to_string())
}

/// Reads a `.caffemodel.h5` into a caffemodel-like `NetParameter` (layers with names and
/// `blobs`, no types), so it feeds every `--weights` (see [`super::caffemodel::read`]).
pub fn read(path: &Path) -> Result<NetParameter> {
    let file = h5::open(path)?;
    let data = file.group("data").map_err(|_| {
        Error::format(
            path,
            "has no group `data`: not a Caffe HDF5 weights file (data/LAYER/0, 1, ...)",
        )
    })?;
    let diff = file.group("diff").ok();
    let mut net = NetParameter::default();
    walk(&data, diff.as_ref(), &data, path, "", &mut net)?;
    if net.layer.is_empty() {
        return Err(Error::format(path, "group `data` holds no layer"));
    }
    Ok(net)
}

fn walk(
    data: &hdf5::Group,
    diff: Option<&hdf5::Group>,
    group: &hdf5::Group,
    path: &Path,
    prefix: &str,
    net: &mut NetParameter,
) -> Result<()> {
    let names = group.member_names().map_err(|e| h5_err(path, e))?;
    for n in names {
        let Ok(g) = group.group(&n) else {
            continue;
        };
        let name = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        let mut blobs = Vec::new();
        for i in 0.. {
            let key = format!("{name}/{i}");
            if g.dataset(&i.to_string()).is_err() {
                break;
            }
            let (shape, values) = h5::read_f32(data, path, &key)?;
            let diff_values = match diff {
                Some(dg) if dg.dataset(&key).is_ok() => {
                    let (ds, dv) = h5::read_f32(dg, path, &key)?;
                    if ds != shape {
                        return Err(Error::format(
                            path,
                            format!("layer `{name}` blob {i}: diff and data shapes differ"),
                        ));
                    }
                    dv
                }
                _ => Vec::new(),
            };
            blobs.push(BlobProto {
                shape: Some(BlobShape {
                    dim: shape.iter().map(|&d| d as i64).collect(),
                }),
                data: values,
                diff: diff_values,
                ..Default::default()
            });
        }
        // A group that only holds nested layers (`inception` of `inception/1x1`) is no layer.
        let nests = !g.groups().map_err(|e| h5_err(path, e))?.is_empty();
        if !blobs.is_empty() || !nests {
            net.layer.push(LayerParameter {
                name: Some(name.clone()),
                blobs,
                ..Default::default()
            });
        }
        walk(data, diff, &g, path, &name, net)?;
    }
    Ok(())
}

/// Gets or creates the group of a layer, nesting at each `/`.
fn layer_group(root: &hdf5::Group, name: &str, path: &Path) -> Result<hdf5::Group> {
    let mut g = root.clone();
    for part in name.split('/').filter(|p| !p.is_empty()) {
        g = match g.group(part) {
            Ok(x) => x,
            Err(_) => g.create_group(part).map_err(|e| h5_err(path, e))?,
        };
    }
    Ok(g)
}

/// Writes the layers' blobs of `net` (a caffemodel `NetParameter`) in Caffe's HDF5 layout;
/// `diff` also writes the `diff` group. The file appears whole (written beside, then renamed).
pub fn write(path: impl AsRef<Path>, net: &NetParameter, diff: bool) -> Result<()> {
    let path = path.as_ref();
    let tmp = path.with_extension("h5.tmp");
    {
        let file = h5::create(&tmp)?;
        let data = file.create_group("data").map_err(|e| h5_err(&tmp, e))?;
        let diff_group = if diff {
            Some(file.create_group("diff").map_err(|e| h5_err(&tmp, e))?)
        } else {
            None
        };
        for l in &net.layer {
            let g = layer_group(&data, l.name(), &tmp)?;
            let dg = diff_group
                .as_ref()
                .map(|d| layer_group(d, l.name(), &tmp))
                .transpose()?;
            for (i, b) in l.blobs.iter().enumerate() {
                let shape: Vec<usize> = match &b.shape {
                    Some(s) => s.dim.iter().map(|&d| d.max(0) as usize).collect(),
                    None => vec![b.data.len()],
                };
                h5::write_f32(&g, &tmp, &i.to_string(), &shape, &b.data)?;
                if let Some(dg) = &dg {
                    let zeros;
                    let d = if b.diff.len() == b.data.len() {
                        &b.diff
                    } else {
                        zeros = vec![0.0; b.data.len()];
                        &zeros
                    };
                    h5::write_f32(dg, &tmp, &i.to_string(), &shape, d)?;
                }
            }
        }
        file.flush().map_err(|e| h5_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(dim: Vec<i64>, data: Vec<f32>) -> BlobProto {
        BlobProto {
            shape: Some(BlobShape { dim }),
            data,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_in_caffe_layout_with_nested_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.caffemodel.h5");
        let layer = |name: &str, blobs| LayerParameter {
            name: Some(name.into()),
            blobs,
            ..Default::default()
        };
        let net = NetParameter {
            layer: vec![
                layer("data", vec![]),
                layer(
                    "inception/1x1",
                    vec![
                        blob(vec![2, 1, 1, 1], vec![1.5, -2.0]),
                        blob(vec![2], vec![0.25, 3.0]),
                    ],
                ),
                layer("ip", vec![blob(vec![1, 3], vec![7.0, 8.0, 9.0])]),
            ],
            ..Default::default()
        };
        write(&path, &net, false).unwrap();
        // Caffe's layout, read with the crate directly.
        let f = hdf5::File::open(&path).unwrap();
        let w: Vec<f32> = f.dataset("data/ip/0").unwrap().read_raw().unwrap();
        assert_eq!(w, [7.0, 8.0, 9.0]);
        assert_eq!(f.dataset("data/inception/1x1/1").unwrap().shape(), vec![2]);
        assert!(f.group("data/data").is_ok());
        drop(f);
        // By extension, and by signature under another name.
        for p in [path.clone(), dir.path().join("renamed.bin")] {
            if p != path {
                std::fs::copy(&path, &p).unwrap();
            }
            let back = crate::caffe::caffemodel::read(&p).unwrap();
            let find = |n: &str| back.layer.iter().find(|l| l.name() == n).unwrap();
            assert_eq!(find("ip").blobs, net.layer[2].blobs);
            assert_eq!(find("inception/1x1").blobs, net.layer[1].blobs);
            assert!(find("data").blobs.is_empty());
            assert_eq!(back.layer.len(), 3);
        }
    }

    #[test]
    fn a_file_without_data_group_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.h5");
        hdf5::File::create(&path).unwrap();
        let e = crate::caffe::caffemodel::read(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.h5") && e.contains("no group `data`"), "{e}");
    }
}
