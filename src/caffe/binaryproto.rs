//! `.binaryproto` files: one serialized `BlobProto` (Caffe's mean files). Decoding goes through
//! the one stored-blob reader, [`crate::blob::blob_from_proto`], which checks every size.

use crate::blob::{blob_from_proto, blob_to_legacy_proto};
use crate::proto::BlobProto;
use crate::{Blob, Error, Result};
use prost::Message;
use std::path::Path;

/// Decodes `.binaryproto` bytes into a blob of the shape they declare; `label` names the source
/// in errors.
pub fn decode_blob_proto(bytes: &[u8], label: &str) -> Result<Blob> {
    let p = BlobProto::decode(bytes)
        .map_err(|e| Error::format(label, format!("not a valid binaryproto (BlobProto): {e}")))?;
    blob_from_proto(&p, label)
}

/// Reads a `.binaryproto` file into a blob of the shape it declares.
pub fn read_blob_proto(path: impl AsRef<Path>) -> Result<Blob> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_blob_proto(&bytes, &path.display().to_string())
}

/// Writes a blob as a `.binaryproto` the way Caffe's `compute_image_mean` does (legacy
/// `num/channels/height/width` for blobs of up to four axes, float data), atomically.
pub fn write_blob_proto(path: impl AsRef<Path>, b: &Blob) -> Result<()> {
    super::write_atomic(path.as_ref(), &blob_to_legacy_proto(b).encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaryproto_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.binaryproto");
        let b = Blob::from_data(&[3, 2, 2], (0..12).map(|i| i as f32 * 0.5).collect()).unwrap();
        write_blob_proto(&p, &b).unwrap();
        let r = read_blob_proto(&p).unwrap();
        assert_eq!(r.shape, [1, 3, 2, 2]);
        assert_eq!(r.data, b.data);
    }

    #[test]
    fn legacy_negative_num_is_an_error_naming_the_file() {
        let p = BlobProto {
            num: Some(-1),
            channels: Some(3),
            height: Some(2),
            width: Some(2),
            data: vec![0.0; 12],
            ..Default::default()
        };
        let e = decode_blob_proto(&p.encode_to_vec(), "bad.binaryproto")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.binaryproto") && e.contains("negative"),
            "{e}"
        );
        let e = decode_blob_proto(b"\xff\xff\xff", "junk.binaryproto").unwrap_err();
        assert!(e.to_string().contains("junk.binaryproto"), "{e}");
    }
}
