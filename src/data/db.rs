//! Caffe's two key-value stores of `Datum` records behind one type: which backend a directory
//! holds, opening it as a [`Dataset`], and writing one ([`DbWriter`], used by `crema convert`).

use super::image_list::Decode;
use super::leveldb::{LevelDbDataset, LevelDbWriter};
use super::lmdb::{LmdbDataset, LmdbWriter};
use super::Dataset;
use crate::proto::data_parameter::Db;
use crate::proto::Datum;
use crate::Result;
use std::path::Path;
use std::sync::Arc;

/// LMDB or LevelDB (`data_param.backend`, `crema convert --backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Backend {
    Lmdb,
    Leveldb,
}

impl Backend {
    /// Which store a directory holds, from its files: `data.mdb` (LMDB) or `CURRENT` (LevelDB);
    /// `None` when neither is there.
    pub fn detect(dir: &Path) -> Option<Backend> {
        if dir.join("data.mdb").is_file() {
            Some(Backend::Lmdb)
        } else if dir.join("CURRENT").is_file() {
            Some(Backend::Leveldb)
        } else {
            None
        }
    }

    /// Caffe's spelling, as in `data_param { backend: LMDB }`.
    pub fn caffe_name(self) -> &'static str {
        match self {
            Backend::Lmdb => "LMDB",
            Backend::Leveldb => "LEVELDB",
        }
    }

    /// Opens the directory `path` as a data set of this backend.
    pub fn open(self, path: &Path, decode: Decode) -> Result<Arc<dyn Dataset>> {
        Ok(match self {
            Backend::Lmdb => Arc::new(LmdbDataset::open(path, decode)?),
            Backend::Leveldb => Arc::new(LevelDbDataset::open(path, decode)?),
        })
    }
}

impl From<Db> for Backend {
    fn from(d: Db) -> Backend {
        match d {
            Db::Lmdb => Backend::Lmdb,
            Db::Leveldb => Backend::Leveldb,
        }
    }
}

/// A new data set of either backend, written record by record.
pub enum DbWriter {
    Lmdb(LmdbWriter),
    Leveldb(Box<LevelDbWriter>),
}

impl DbWriter {
    /// Creates the directory `path`; refuses one that already holds a data set.
    pub fn create(backend: Backend, path: &Path) -> Result<Self> {
        Ok(match backend {
            Backend::Lmdb => DbWriter::Lmdb(LmdbWriter::create(path)?),
            Backend::Leveldb => DbWriter::Leveldb(Box::new(LevelDbWriter::create(path)?)),
        })
    }

    /// Stores one record under `key` (Caffe's convert tools use `%08d_<file>`).
    pub fn put(&mut self, key: &[u8], d: &Datum) -> Result<()> {
        match self {
            DbWriter::Lmdb(w) => w.put(key, d),
            DbWriter::Leveldb(w) => w.put(key, d),
        }
    }

    /// Writes what is pending, closes the store and returns the number of records.
    pub fn finish(self) -> Result<usize> {
        match self {
            DbWriter::Lmdb(w) => w.finish(),
            DbWriter::Leveldb(w) => w.finish(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DbWriter::Lmdb(_) => Backend::Lmdb,
            DbWriter::Leveldb(_) => Backend::Leveldb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image_list::{encode_image, read_image};
    use crate::data::lmdb::sample_to_datum;
    use crate::data::Sample;

    /// The same records written and read back through both backends: a raw `Datum`, an encoded
    /// PNG decoded in colour and in grey, reopened, and a second create refused.
    #[test]
    fn raw_and_encoded_roundtrip_both_backends() {
        let s = Sample {
            channels: 1,
            height: 2,
            width: 3,
            data: vec![0.0, 1.0, 2.0, 3.0, 254.0, 255.0],
            label: 7,
        };
        let img = read_image("../shared/data/images/coffee.png", Decode::default()).unwrap();
        let enc = Datum {
            data: Some(encode_image(&img, "png").unwrap()),
            encoded: Some(true),
            label: Some(2),
            ..Default::default()
        };
        let mut want = img.clone();
        want.label = 2;
        for backend in [Backend::Lmdb, Backend::Leveldb] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("db");
            let mut w = DbWriter::create(backend, &p).unwrap();
            assert_eq!(w.backend(), backend);
            w.put(b"00000000", &sample_to_datum(&s)).unwrap();
            w.put(b"00000001_coffee.png", &enc).unwrap();
            assert_eq!(w.finish().unwrap(), 2);
            assert_eq!(Backend::detect(&p), Some(backend));
            let ds = backend.open(&p, Decode::default()).unwrap();
            assert_eq!(ds.len(), 2);
            assert_eq!(ds.get(0).unwrap(), s, "{backend:?}");
            assert_eq!(ds.get(1).unwrap(), want, "{backend:?}");
            // A second open of the same directory (LevelDB shares one handle per directory).
            let gray = Decode {
                color: Some(false),
                resize: None,
            };
            assert_eq!(backend.open(&p, gray).unwrap().get(1).unwrap().channels, 1);
            drop(ds);
            // Closed and reopened: still the same records.
            let again = backend.open(&p, Decode::default()).unwrap();
            assert_eq!(again.get(0).unwrap(), s, "{backend:?}");
            assert!(
                DbWriter::create(backend, &p).is_err(),
                "refuses to overwrite"
            );
        }
    }
}
