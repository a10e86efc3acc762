//! Caffe's LevelDB data sets (`backend: LEVELDB`, Caffe's default): a LevelDB directory
//! (`CURRENT`, `MANIFEST-*`, `*.ldb` tables, a `*.log`), each value a serialized `Datum`, keys in
//! order (`00000000`, or `00000000_path` from `convert_imageset`), written the way Caffe does
//! (snappy-compressed tables, a 256 MB write buffer, batches of 1000).
//!
//! The LevelDB handle (rusty-leveldb) is single-threaded (`Rc` inside), while a [`Dataset`] is read
//! from several threads, so one reader thread per directory owns the database and answers `get`
//! requests over a channel; decoding a record happens in the caller. The keys are listed once at
//! open by iterating the database (so their number is the records actually there, never a count
//! read from a file); values are read on demand, so memory stays at the keys plus LevelDB's block
//! cache, as with [`LmdbDataset`](super::lmdb::LmdbDataset).
//!
//! LevelDB has no read-only mode: opening takes the directory's `LOCK` and may write a new log and
//! manifest (Caffe's reader does the same), so the directory must be writable.

use super::db::Backend;
use super::image_list::Decode;
use super::lmdb::datum_to_sample;
use super::{Dataset, Sample};
use crate::proto::Datum;
use crate::{Error, Result};
use prost::Message;
use rusty_leveldb::compressor::SnappyCompressor;
use rusty_leveldb::{CompressorId, LdbIterator, Options, WriteBatch, DB};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

/// A request to the reader thread: the value of one key (or the error), sent back on `reply`.
type Reply = Sender<std::result::Result<Option<Vec<u8>>, String>>;
/// A key to look up and where to send its value.
type Request = (Vec<u8>, Reply);

/// One open database, shared by every [`LevelDbDataset`] of the same directory (LevelDB's lock
/// refuses a second open in one process); dropping the last one closes it.
struct Reader {
    tx: Option<Mutex<Sender<Request>>>,
    thread: Option<JoinHandle<()>>,
    keys: Vec<Vec<u8>>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which closes the database and releases its lock
        // before a later open of the same directory.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks the footer of every table file before LevelDB reads it: rusty-leveldb allocates the
/// sizes in a footer's block handles (which no checksum covers) before reading them, so a damaged
/// footer must not reach it. Handles inside blocks are checksummed by LevelDB itself.
fn check_tables(dir: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    const FOOTER: u64 = 48;
    const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries {
        let f = e.map_err(|e| Error::io(dir, e))?.path();
        if !f.extension().is_some_and(|x| x == "ldb" || x == "sst") {
            continue;
        }
        if f.extension().is_some_and(|x| x == "sst") && !f.with_extension("ldb").exists() {
            // LevelDB before 1.14 named tables `.sst`; rusty-leveldb opens `.ldb` only.
            return Err(Error::format(
                &f,
                "a table with LevelDB's pre-1.14 name: rename each NNNNNN.sst of this directory \
                 to NNNNNN.ldb (the format is the same)",
            ));
        }
        let bad = |m: String| Error::format(&f, format!("corrupt LevelDB table: {m}"));
        let len = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?.len();
        if len < FOOTER {
            return Err(bad(format!(
                "{len} bytes, shorter than the {FOOTER}-byte footer"
            )));
        }
        let mut foot = [0u8; FOOTER as usize];
        let mut file = std::fs::File::open(&f).map_err(|e| Error::io(&f, e))?;
        file.seek(SeekFrom::Start(len - FOOTER))
            .and_then(|_| file.read_exact(&mut foot))
            .map_err(|e| Error::io(&f, e))?;
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&foot[40..]);
        if u64::from_le_bytes(magic) != MAGIC {
            return Err(bad(
                "no table magic number (truncated or not a table)".into()
            ));
        }
        // Two block handles (offset, size), varints; each block has a 5-byte trailer.
        let mut pos = 0;
        let mut varint = || {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let b = *foot.get(pos)?;
                pos += 1;
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return Some(v);
                }
            }
            None
        };
        for what in ["metaindex", "index"] {
            let (off, size) = varint()
                .zip(varint())
                .ok_or_else(|| bad(format!("unreadable {what} block handle")))?;
            if off
                .checked_add(size)
                .and_then(|e| e.checked_add(5))
                .is_none_or(|e| e > len - FOOTER)
            {
                return Err(bad(format!(
                    "the {what} block ({size} bytes at {off}) lies outside the {len}-byte file"
                )));
            }
        }
    }
    Ok(())
}

/// Caffe's converters (and `crema convert`) number their keys `%08d` or `%08d_name` from 0 in
/// write order. LevelDB's iterator skips a block it cannot read (bad checksum) without telling,
/// so for keys in that form a gap in the numbers is reported as damage instead of a silently
/// shorter data set.
fn check_numbering(path: &Path, keys: &[Vec<u8>]) -> Result<()> {
    let number = |k: &[u8]| -> Option<usize> {
        let digits = k.get(..8)?;
        if !digits.iter().all(u8::is_ascii_digit) || k.get(8).is_some_and(|&c| c != b'_') {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let Some(numbers) = keys.iter().map(|k| number(k)).collect::<Option<Vec<_>>>() else {
        return Ok(());
    };
    match numbers.iter().enumerate().find(|(i, n)| *i != **n) {
        None => Ok(()),
        Some((i, _)) => Err(Error::format(
            path,
            format!(
                "damaged LevelDB: record {i:08} is missing (the keys are numbered from 00000000, \
                 the next is `{}`); a table block could not be read",
                String::from_utf8_lossy(&keys[i])
            ),
        )),
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "LevelDB failed".into())
}

fn read_options() -> Options {
    Options {
        create_if_missing: false,
        paranoid_checks: true,
        ..Options::default()
    }
}

impl Reader {
    fn open(path: &Path) -> Result<Reader> {
        if !path.is_dir() {
            return Err(Error::format(
                path,
                "not a LevelDB data set (no such directory)",
            ));
        }
        match Backend::detect(path) {
            Some(Backend::Leveldb) => {}
            Some(Backend::Lmdb) => {
                return Err(Error::format(
                    path,
                    "this is an LMDB data set (it holds data.mdb, no CURRENT), not LevelDB: set \
                     `backend: LMDB` in data_param",
                ))
            }
            None => {
                return Err(Error::format(
                    path,
                    "not a LevelDB data set (no CURRENT file in this directory)",
                ))
            }
        }
        check_tables(path)?;
        let (ktx, krx) = channel::<std::result::Result<Vec<Vec<u8>>, String>>();
        let (tx, rx) = channel::<Request>();
        let dir = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("leveldb".into())
            .spawn(move || {
                // rusty-leveldb may panic on a corrupt file; that becomes an error, not a crash.
                let opened = catch_unwind(AssertUnwindSafe(|| {
                    let mut db = DB::open(&dir, read_options()).map_err(|e| e.to_string())?;
                    let mut it = db.new_iter().map_err(|e| e.to_string())?;
                    let mut keys = Vec::new();
                    while it.advance() {
                        if let Some((k, _)) = it.current() {
                            keys.push(k.to_vec());
                        }
                    }
                    drop(it);
                    Ok::<_, String>((db, keys))
                }))
                .unwrap_or_else(|p| Err(panic_text(p)));
                let mut db = match opened {
                    Ok((db, keys)) => {
                        let _ = ktx.send(Ok(keys));
                        db
                    }
                    Err(e) => {
                        let _ = ktx.send(Err(e));
                        return;
                    }
                };
                let mut broken = None;
                while let Ok((key, reply)) = rx.recv() {
                    let r = match &broken {
                        Some(e) => Err(format!("{e} (earlier)")),
                        None => catch_unwind(AssertUnwindSafe(|| {
                            let snap = db.get_snapshot();
                            db.get_at(&snap, &key)
                                .map(|v| v.map(|b| b.to_vec()))
                                .map_err(|e| e.to_string())
                        }))
                        .unwrap_or_else(|p| {
                            let e = panic_text(p);
                            broken = Some(e.clone());
                            Err(e)
                        }),
                    };
                    let _ = reply.send(r);
                }
                if broken.is_none() {
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
                } else {
                    std::mem::forget(db);
                }
            })
            .map_err(|e| Error::io(path, e))?;
        let keys = match krx.recv() {
            Ok(Ok(k)) => k,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(Error::format(path, format!("cannot read LevelDB: {e}")));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::format(
                    path,
                    "cannot read LevelDB: the reader failed",
                ));
            }
        };
        let reader = Reader {
            tx: Some(Mutex::new(tx)),
            thread: Some(thread),
            keys,
        };
        if reader.keys.is_empty() {
            return Err(Error::format(path, "the LevelDB holds no records"));
        }
        check_numbering(path, &reader.keys)?;
        Ok(reader)
    }

    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
        let (rtx, rrx) = channel();
        let sent = self.tx.as_ref().map(|t| {
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .send((key.to_vec(), rtx))
        });
        if !matches!(sent, Some(Ok(()))) {
            return Err("the LevelDB reader has stopped".into());
        }
        rrx.recv()
            .unwrap_or_else(|_| Err("the LevelDB reader has stopped".into()))
    }
}

/// The open database of `path`, shared while any data set holds it.
fn shared_reader(path: &Path) -> Result<Arc<Reader>> {
    static READERS: OnceLock<Mutex<HashMap<PathBuf, Weak<Reader>>>> = OnceLock::new();
    let key = path.canonicalize().map_err(|e| Error::io(path, e))?;
    let mut map = READERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(r) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(r);
    }
    let r = Arc::new(Reader::open(path)?);
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&r));
    Ok(r)
}

/// A LevelDB of `Datum`s as a [`Dataset`]; the keys are listed once at open, records are read on
/// demand.
pub struct LevelDbDataset {
    path: PathBuf,
    reader: Arc<Reader>,
    decode: Decode,
}

impl LevelDbDataset {
    /// Opens `path` (the LevelDB directory).
    pub fn open(path: impl AsRef<Path>, decode: Decode) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let reader = shared_reader(&path)?;
        Ok(LevelDbDataset {
            path,
            reader,
            decode,
        })
    }

    /// The raw `Datum` of record `index`.
    pub fn datum(&self, index: usize) -> Result<Datum> {
        let what = self.record_name(index);
        let bytes = self
            .reader
            .get(&self.reader.keys[index])
            .map_err(|e| Error::format(&what, format!("LevelDB: {e}")))?
            .ok_or_else(|| Error::format(&what, "record missing or unreadable"))?;
        Datum::decode(bytes.as_slice())
            .map_err(|e| Error::format(&what, format!("not a Datum: {e}")))
    }

    fn record_name(&self, index: usize) -> String {
        format!(
            "{} record {} (key `{}`)",
            self.path.display(),
            index,
            String::from_utf8_lossy(&self.reader.keys[index])
        )
    }
}

impl Dataset for LevelDbDataset {
    fn len(&self) -> usize {
        self.reader.keys.len()
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

/// Writes a new LevelDB the way Caffe's converters do: snappy-compressed tables, a 256 MB write
/// buffer, one `Datum` per key, written in batches of 1000; `finish` moves everything into tables.
pub struct LevelDbWriter {
    path: PathBuf,
    db: Option<DB>,
    batch: WriteBatch,
    pending: usize,
    written: usize,
    range: Option<(Vec<u8>, Vec<u8>)>,
}

impl LevelDbWriter {
    /// Creates the directory `path` (it must not exist yet) and an empty database in it.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            return Err(Error::Invalid(format!(
                "{} already exists; remove it or choose another output",
                path.display()
            )));
        }
        let opts = Options {
            create_if_missing: true,
            error_if_exists: false,
            write_buffer_size: 256 << 20,
            compressor: SnappyCompressor::ID,
            ..Options::default()
        };
        let db = DB::open(&path, opts)
            .map_err(|e| Error::format(&path, format!("cannot create LevelDB: {e}")))?;
        Ok(LevelDbWriter {
            path,
            db: Some(db),
            batch: WriteBatch::default(),
            pending: 0,
            written: 0,
            range: None,
        })
    }

    /// Queues one record (written every 1000 and at `finish`).
    pub fn put(&mut self, key: &[u8], datum: &Datum) -> Result<()> {
        self.batch.put(key, &datum.encode_to_vec());
        self.pending += 1;
        self.range = Some(match self.range.take() {
            None => (key.to_vec(), key.to_vec()),
            Some((lo, hi)) => (
                lo.min(key.to_vec()),
                if key > hi.as_slice() {
                    key.to_vec()
                } else {
                    hi
                },
            ),
        });
        if self.pending >= 1000 {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        let batch = std::mem::take(&mut self.batch);
        db.write(batch, false)
            .map_err(|e| Error::format(&self.path, format!("LevelDB: {e}")))?;
        self.written += self.pending;
        self.pending = 0;
        Ok(())
    }

    /// Writes what is left, compacts the write buffer into tables, closes the database and
    /// returns the number of records.
    pub fn finish(mut self) -> Result<usize> {
        self.commit()?;
        if let Some(mut db) = self.db.take() {
            let lv = |e: rusty_leveldb::Status| Error::format(&self.path, format!("LevelDB: {e}"));
            if let Some((lo, hi)) = &self.range {
                db.compact_range(lo, hi).map_err(lv)?;
            }
            db.close().map_err(lv)?;
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

    fn raw(i: usize) -> Datum {
        Datum {
            channels: Some(1),
            height: Some(32),
            width: Some(32),
            data: Some((0..1024).map(|k| ((i * 7 + k) % 256) as u8).collect()),
            label: Some((i % 10) as i32),
            ..Default::default()
        }
    }

    #[test]
    fn many_records_snappy_tables_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("many");
        let mut w = LevelDbWriter::create(&p).unwrap();
        for i in 0..2500 {
            w.put(format!("{i:08}").as_bytes(), &raw(i)).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 2500);
        // Everything is in tables after `finish`, and they are compressed: 2500 records of
        // 1024 pixel bytes (a repeating ramp) take far less than 2.5 MB.
        let tables: Vec<_> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| f.extension().is_some_and(|x| x == "ldb"))
            .collect();
        assert!(!tables.is_empty());
        let size: u64 = tables
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(size < 1_000_000, "{size} bytes of tables");
        let ds = LevelDbDataset::open(&p, Decode::default()).unwrap();
        assert_eq!(ds.len(), 2500);
        for i in [0, 1, 999, 1000, 2499] {
            assert_eq!(ds.datum(i).unwrap(), raw(i));
        }
    }

    /// A set written by Caffe's own LevelDB library (C++ libleveldb 1.23, see
    /// tests/leveldb/make_libleveldb_set.cc): 200 records in a snappy table, 20 in the log.
    #[test]
    fn reads_a_set_written_by_libleveldb() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("set");
        // Opening may write (LevelDB replays the log), so a copy.
        std::fs::create_dir(&p).unwrap();
        for f in std::fs::read_dir("tests/leveldb/libleveldb_1.23").unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, p.join(f.file_name().unwrap())).unwrap();
        }
        let ds = LevelDbDataset::open(&p, Decode::default()).unwrap();
        assert_eq!(ds.len(), 220);
        for i in [0, 1, 199, 200, 219] {
            let s = ds.get(i).unwrap();
            assert_eq!((s.shape(), s.label), ([1, 28, 28], (i % 10) as i32));
            let want: Vec<f32> = (0..784).map(|k| ((7 * i + k) % 256) as f32).collect();
            assert_eq!(s.data, want, "record {i}");
        }
    }

    #[test]
    fn wrong_backend_truncated_and_garbage_directories() {
        let dir = tempfile::tempdir().unwrap();
        let e = err_text(LevelDbDataset::open(
            dir.path().join("none"),
            Decode::default(),
        ));
        assert!(e.contains("none") && e.contains("No such file"), "{e}");
        let e = err_text(LevelDbDataset::open(dir.path(), Decode::default()));
        assert!(e.contains("no CURRENT"), "{e}");

        let lm = dir.path().join("lm");
        let mut w = crate::data::lmdb::LmdbWriter::create(&lm).unwrap();
        w.put(b"00000000", &raw(0)).unwrap();
        w.finish().unwrap();
        let e = err_text(LevelDbDataset::open(&lm, Decode::default()));
        assert!(e.contains("lm") && e.contains("backend: LMDB"), "{e}");

        // A real set, then copies with each table file cut in half or overwritten with junk.
        let good = dir.path().join("good");
        let mut w = LevelDbWriter::create(&good).unwrap();
        for i in 0..300 {
            w.put(format!("{i:08}").as_bytes(), &raw(i)).unwrap();
        }
        w.finish().unwrap();
        for (name, damage) in [
            ("cut", 0usize),
            ("junk", 1),
            ("nocurrent", 2),
            ("badcurrent", 3),
            ("flipped", 4),
            ("oldnames", 5),
        ] {
            let bad = dir.path().join(name);
            std::fs::create_dir(&bad).unwrap();
            for f in std::fs::read_dir(&good).unwrap() {
                let f = f.unwrap().path();
                let fname = f.file_name().unwrap().to_owned();
                let bytes = std::fs::read(&f).unwrap();
                let is_table = f.extension().is_some_and(|x| x == "ldb");
                let out = match damage {
                    0 if is_table => bytes[..bytes.len() / 2].to_vec(),
                    1 if is_table => vec![0x5a; bytes.len()],
                    3 if fname == "CURRENT" => b"MANIFEST-999999\n".to_vec(),
                    4 if is_table => {
                        let mut b = bytes.clone();
                        b[2000] ^= 0xff;
                        b
                    }
                    _ => bytes,
                };
                if damage == 2 && fname == "CURRENT" {
                    continue;
                }
                let to = if damage == 5 && is_table {
                    bad.join(&fname).with_extension("sst")
                } else {
                    bad.join(&fname)
                };
                std::fs::write(to, out).unwrap();
            }
            // Opening fails with the file or directory named: never a panic, never a set that
            // is silently shorter.
            match LevelDbDataset::open(&bad, Decode::default()) {
                Err(e) => {
                    let e = e.chain_text();
                    let want = match damage {
                        0 | 1 => "no table magic number",
                        2 => "no CURRENT",
                        3 => "MANIFEST-999999",
                        4 => "record 00000012 is missing",
                        _ => "to NNNNNN.ldb",
                    };
                    assert!(e.contains(name) && e.contains(want), "{e}");
                }
                Ok(ds) => panic!("{name}: {} records listed from a damaged set", ds.len()),
            }
        }
    }
}
