//! Caffe's LMDB data sets: the unnamed database of an LMDB environment (a directory holding
//! `data.mdb`), each value a serialized `Datum` (raw uint8 CHW pixels, `float_data`, or an encoded
//! JPEG/PNG), keys in order (`00000000`, or `00000000_path` from `convert_imageset`).

use super::image_list::{decode_image, Decode};
use super::{Dataset, Sample};
use crate::proto::Datum;
use crate::{Error, Result};
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// LMDB refuses a second open of one environment in a process, so readers share one handle.
fn shared_env(path: &Path) -> Result<Env<WithoutTls>> {
    static ENVS: OnceLock<Mutex<HashMap<PathBuf, Env<WithoutTls>>>> = OnceLock::new();
    let key = path.canonicalize().map_err(|e| Error::io(path, e))?;
    let mut map = ENVS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(e) = map.get(&key) {
        return Ok(e.clone());
    }
    if !key.join("data.mdb").is_file() {
        return Err(Error::format(
            path,
            if key.join("CURRENT").is_file() {
                "this is a LevelDB data set (it holds CURRENT, no data.mdb), not LMDB: set \
                 `backend: LEVELDB` in data_param"
            } else {
                "not an LMDB data set (no data.mdb in this directory)"
            },
        ));
    }
    check_data_file(path, &key.join("data.mdb"))?;
    let mut opts = EnvOpenOptions::new().read_txn_without_tls();
    // SAFETY: the environment is opened once per process (this cache) and only read.
    let env = unsafe {
        opts.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK)
            .max_readers(512)
            .open(&key)
    }
    .map_err(|e| Error::format(path, format!("cannot open LMDB: {e}")))?;
    map.insert(key, env.clone());
    Ok(env)
}

/// Checks `data.mdb`'s meta pages before LMDB maps it: a file shorter than the pages its newest
/// meta page claims would make LMDB read past the end of the mapping (a bus error, not an error).
fn check_data_file(dir: &Path, file: &Path) -> Result<()> {
    use std::io::Read;
    const MAGIC: u32 = 0xBEEF_C0DE;
    let len = std::fs::metadata(file)
        .map_err(|e| Error::io(file, e))?
        .len();
    let mut head = vec![0u8; 4096];
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let got = f.read(&mut head).map_err(|e| Error::io(file, e))?;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let bad = |m: String| Error::format(dir, format!("corrupt LMDB data.mdb: {m}"));
    if got < 152 || u32_at(&head, 16) != MAGIC {
        return Err(bad("no LMDB meta page (wrong magic number)".into()));
    }
    let page = u32_at(&head, 40) as u64;
    if !(512..=65536).contains(&page) || !page.is_power_of_two() {
        return Err(bad(format!("implausible page size {page}")));
    }
    // The second meta page sits at offset `page`; the newer transaction wins.
    let mut metas = vec![(u64_at(&head, 144), u64_at(&head, 136))];
    let mut second = vec![0u8; 152];
    use std::io::{Seek, SeekFrom};
    if len >= page + 152
        && f.seek(SeekFrom::Start(page)).is_ok()
        && f.read_exact(&mut second).is_ok()
        && u32_at(&second, 16) == MAGIC
    {
        metas.push((u64_at(&second, 144), u64_at(&second, 136)));
    }
    let last_pg = metas.iter().max().map(|m| m.1).unwrap_or(0);
    let need = last_pg.saturating_add(1).saturating_mul(page);
    if len < need {
        return Err(bad(format!(
            "truncated: the file has {len} bytes, its meta page needs {need} ({} pages of {page})",
            last_pg + 1
        )));
    }
    Ok(())
}

/// Turns a `Datum` into a sample: raw bytes (checked against channels x height x width),
/// `float_data`, or an encoded image decoded with `decode` (Caffe's force_color / force_gray).
pub fn datum_to_sample(d: &Datum, decode: Decode, what: &str) -> Result<Sample> {
    if d.encoded() {
        let mut s = decode_image(d.data(), decode, what)?;
        s.label = d.label();
        return Ok(s);
    }
    let (c, h, w) = (d.channels(), d.height(), d.width());
    if c <= 0 || h <= 0 || w <= 0 {
        return Err(Error::format(
            what,
            format!("Datum has shape {c}x{h}x{w}; raw records need positive dimensions"),
        ));
    }
    // A forged shape must not overflow the product.
    let n = [c, h, w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d as usize))
        .ok_or_else(|| Error::format(what, format!("Datum shape {c}x{h}x{w} overflows")))?;
    let data: Vec<f32> = if !d.data().is_empty() {
        if d.data().len() != n {
            return Err(Error::format(
                what,
                format!(
                    "Datum {c}x{h}x{w} needs {n} bytes of pixels, it holds {}",
                    d.data().len()
                ),
            ));
        }
        d.data().iter().map(|&b| b as f32).collect()
    } else if d.float_data.len() == n {
        d.float_data.clone()
    } else {
        return Err(Error::format(
            what,
            format!(
                "Datum {c}x{h}x{w} needs {n} values, it holds {} bytes and {} floats",
                d.data().len(),
                d.float_data.len()
            ),
        ));
    };
    Ok(Sample {
        channels: c as usize,
        height: h as usize,
        width: w as usize,
        data,
        label: d.label(),
    })
}

/// A sample as a raw `Datum` (pixel values rounded to bytes).
pub fn sample_to_datum(s: &Sample) -> Datum {
    Datum {
        channels: Some(s.channels as i32),
        height: Some(s.height as i32),
        width: Some(s.width as i32),
        data: Some(
            s.data
                .iter()
                .map(|&v| v.round().clamp(0.0, 255.0) as u8)
                .collect(),
        ),
        label: Some(s.label),
        ..Default::default()
    }
}

/// An LMDB of `Datum`s as a [`Dataset`]; the keys are listed once at open, records are read on
/// demand.
pub struct LmdbDataset {
    path: PathBuf,
    env: Env<WithoutTls>,
    db: Database<Bytes, Bytes>,
    keys: Vec<Vec<u8>>,
    decode: Decode,
}

impl LmdbDataset {
    /// Opens `path` (the LMDB directory) read-only.
    pub fn open(path: impl AsRef<Path>, decode: Decode) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let env = shared_env(&path)?;
        let lm = |e: heed::Error| Error::format(&path, format!("LMDB: {e}"));
        let rtxn = env.read_txn().map_err(lm)?;
        let db: Database<Bytes, Bytes> = env
            .open_database(&rtxn, None)
            .map_err(lm)?
            .ok_or_else(|| Error::format(&path, "LMDB has no main database"))?;
        let mut keys = Vec::new();
        for item in db.iter(&rtxn).map_err(lm)? {
            let (k, _) = item.map_err(lm)?;
            keys.push(k.to_vec());
        }
        drop(rtxn);
        if keys.is_empty() {
            return Err(Error::format(&path, "the LMDB holds no records"));
        }
        Ok(LmdbDataset {
            path,
            env,
            db,
            keys,
            decode,
        })
    }

    /// The raw `Datum` of record `index`.
    pub fn datum(&self, index: usize) -> Result<Datum> {
        let what = self.record_name(index);
        let lm = |e: heed::Error| Error::format(&what, format!("LMDB: {e}"));
        let rtxn = self.env.read_txn().map_err(lm)?;
        let bytes = self
            .db
            .get(&rtxn, &self.keys[index])
            .map_err(lm)?
            .ok_or_else(|| Error::format(&what, "record vanished"))?;
        Datum::decode(bytes).map_err(|e| Error::format(&what, format!("not a Datum: {e}")))
    }

    fn record_name(&self, index: usize) -> String {
        format!(
            "{} record {} (key `{}`)",
            self.path.display(),
            index,
            String::from_utf8_lossy(&self.keys[index])
        )
    }
}

impl Dataset for LmdbDataset {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let d = self.datum(index)?;
        datum_to_sample(&d, self.decode, &self.record_name(index))
    }

    fn costly(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Writes a new LMDB the way Caffe's converters do: one `Datum` per key, committed in chunks.
pub struct LmdbWriter {
    path: PathBuf,
    env: Option<Env>,
    db: Database<Bytes, Bytes>,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    written: usize,
}

impl LmdbWriter {
    /// Creates the directory `path` (it must not exist yet) and an empty environment in it.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            return Err(Error::Invalid(format!(
                "{} already exists; remove it or choose another output",
                path.display()
            )));
        }
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lm = |e: heed::Error| Error::format(&path, format!("LMDB: {e}"));
        let mut opts = EnvOpenOptions::new();
        // 1 TiB of address space; the file only grows as records are written.
        opts.map_size(1 << 40);
        // SAFETY: a fresh directory that nothing else has open.
        let env = unsafe { opts.open(&path) }.map_err(lm)?;
        let mut wtxn = env.write_txn().map_err(lm)?;
        let db: Database<Bytes, Bytes> = env.create_database(&mut wtxn, None).map_err(lm)?;
        wtxn.commit().map_err(lm)?;
        Ok(LmdbWriter {
            path,
            env: Some(env),
            db,
            pending: Vec::new(),
            written: 0,
        })
    }

    /// Queues one record (committed every 1000 and at `finish`).
    pub fn put(&mut self, key: &[u8], datum: &Datum) -> Result<()> {
        self.pending.push((key.to_vec(), datum.encode_to_vec()));
        if self.pending.len() >= 1000 {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let Some(env) = self.env.as_ref() else {
            return Ok(());
        };
        let lm = |e: heed::Error| Error::format(&self.path, format!("LMDB: {e}"));
        let mut wtxn = env.write_txn().map_err(lm)?;
        for (k, v) in &self.pending {
            self.db.put(&mut wtxn, k, v).map_err(lm)?;
        }
        wtxn.commit().map_err(lm)?;
        self.written += self.pending.len();
        self.pending.clear();
        Ok(())
    }

    /// Commits what is left, closes the environment and returns the number of records.
    pub fn finish(mut self) -> Result<usize> {
        self.commit()?;
        if let Some(env) = self.env.take() {
            env.prepare_for_closing().wait();
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

    #[test]
    fn bad_records_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad");
        let mut w = LmdbWriter::create(&p).unwrap();
        let short = Datum {
            channels: Some(1),
            height: Some(4),
            width: Some(4),
            data: Some(vec![1, 2, 3]),
            ..Default::default()
        };
        w.put(b"00000000", &short).unwrap();
        let enc = Datum {
            data: Some(b"\x89PNG\r\n\x1a\ntruncated".to_vec()),
            encoded: Some(true),
            ..Default::default()
        };
        w.put(b"00000001", &enc).unwrap();
        w.finish().unwrap();
        let ds = LmdbDataset::open(&p, Decode::default()).unwrap();
        let e = err_text(ds.get(0));
        assert!(
            e.contains("bad record 0 (key `00000000`)") && e.contains("16 bytes"),
            "{e}"
        );
        let e = err_text(ds.get(1));
        assert!(e.contains("record 1") && e.contains("decode"), "{e}");

        // A truncated copy of a real LMDB.
        let big = dir.path().join("big");
        let mut w = LmdbWriter::create(&big).unwrap();
        for i in 0..200 {
            let d = Datum {
                channels: Some(1),
                height: Some(32),
                width: Some(32),
                data: Some(vec![i as u8; 1024]),
                ..Default::default()
            };
            w.put(format!("{i:08}").as_bytes(), &d).unwrap();
        }
        w.finish().unwrap();
        let cut = dir.path().join("cut");
        std::fs::create_dir(&cut).unwrap();
        let bytes = std::fs::read(big.join("data.mdb")).unwrap();
        std::fs::write(cut.join("data.mdb"), &bytes[..bytes.len() / 2]).unwrap();
        let e = err_text(LmdbDataset::open(&cut, Decode::default()));
        assert!(e.contains("cut") && e.contains("truncated"), "{e}");
        assert_eq!(
            LmdbDataset::open(&big, Decode::default()).unwrap().len(),
            200
        );

        let e = err_text(LmdbDataset::open(dir.path(), Decode::default()));
        assert!(e.contains("not an LMDB"), "{e}");
        let junk = dir.path().join("junk");
        std::fs::create_dir(&junk).unwrap();
        std::fs::write(junk.join("data.mdb"), vec![7u8; 10000]).unwrap();
        let e = err_text(LmdbDataset::open(&junk, Decode::default()));
        assert!(e.contains("junk") && e.contains("LMDB"), "{e}");
    }
}
