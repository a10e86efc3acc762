//! `HDF5Data` (`hdf5_data_param`: `source`, `batch_size`, `shuffle`): each top is the dataset of
//! its name in every file that the list `source` names (one `.h5` path per line, relative to the
//! list's folder). Datasets are float32 or float64 (read as f32), `N x ...` with the same `N`
//! for every top of a file; a top is `batch_size x` the dataset's remaining axes.
//!
//! Caffe 1.0's order: rows of the current file in order, then the next file, wrapping around to
//! the first. With `shuffle` the file order is shuffled at setup and at each wrap-around, and a
//! file's rows each time it is loaded. One file is held in memory at a time.

use super::{BlobCounts, Layer, SetupCtx};
use crate::data::hdf5 as h5;
use crate::proto::LayerParameter;
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// `HDF5Data` layer.
pub struct HDF5Data {
    source: String,
    batch_size: usize,
    shuffle: bool,
    /// Dataset names: the tops.
    names: Vec<String>,
    files: Vec<PathBuf>,
    /// Rows of each file (checked at setup).
    rows: Vec<usize>,
    /// Each top's shape after the first axis (the same in every file).
    rest: Vec<Vec<usize>>,
    file_order: Vec<usize>,
    /// Position in `file_order`.
    current_file: usize,
    /// The loaded file's datasets, one per top.
    loaded: Vec<Vec<f32>>,
    row_order: Vec<usize>,
    current_row: usize,
    /// Rows read so far over all files (for sharding).
    offset: usize,
    seed: u64,
    rng: StdRng,
    rank: usize,
    count: usize,
}

/// Creates `HDF5Data` from `hdf5_data_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.hdf5_data_param.clone().unwrap_or_default();
    crate::ensure!(
        !d.source().is_empty(),
        "hdf5_data_param.source (a list of .h5 files) must be set"
    );
    crate::ensure!(
        d.batch_size() > 0,
        "hdf5_data_param.batch_size must be positive"
    );
    crate::ensure!(
        !p.top.is_empty(),
        "HDF5Data needs at least one top (each names a dataset)"
    );
    Ok(Box::new(HDF5Data {
        source: d.source().to_string(),
        batch_size: d.batch_size() as usize,
        shuffle: d.shuffle(),
        names: p.top.clone(),
        files: Vec::new(),
        rows: Vec::new(),
        rest: Vec::new(),
        file_order: Vec::new(),
        current_file: 0,
        loaded: Vec::new(),
        row_order: Vec::new(),
        current_row: 0,
        offset: 0,
        seed: 0,
        rng: StdRng::seed_from_u64(0),
        rank: 0,
        count: 1,
    }))
}

impl HDF5Data {
    /// Opens every file and checks every dataset's shape against the first file's.
    fn scan(&mut self) -> Result<()> {
        let list = Path::new(&self.source);
        self.files = h5::read_list(list)?;
        self.rows.clear();
        self.rest.clear();
        for path in &self.files {
            let file = h5::open(path)?;
            let mut rows = None;
            for (t, name) in self.names.iter().enumerate() {
                let shape = h5::float_shape(&file, path, name)?;
                let (n, rest) = (shape[0], shape[1..].to_vec());
                match self.rest.get(t) {
                    None => self.rest.push(rest),
                    Some(first) if *first != rest => {
                        return Err(Error::format(
                            path,
                            format!(
                                "dataset `{name}` has shape {}; expected N x {} as in {}",
                                crate::blob::shape_str(&shape),
                                crate::blob::shape_str(first),
                                self.files[0].display()
                            ),
                        ))
                    }
                    Some(_) => {}
                }
                match rows {
                    None => rows = Some((n, name)),
                    Some((m, first)) if m != n => {
                        return Err(Error::format(
                            path,
                            format!(
                                "dataset `{name}` has {n} rows but `{first}` has {m}; every \
                                 dataset of a file needs the same N"
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let n = rows.map_or(0, |(n, _)| n);
            if n == 0 {
                return Err(Error::format(path, "holds no rows (N = 0)"));
            }
            self.rows.push(n);
        }
        Ok(())
    }

    /// Loads the file at `file_order[current_file]` and orders its rows.
    fn load(&mut self) -> Result<()> {
        let idx = self.file_order[self.current_file];
        let path = &self.files[idx];
        let file = h5::open(path)?;
        self.loaded.clear();
        for (t, name) in self.names.iter().enumerate() {
            let (shape, data) = h5::read_f32(&file, path, name)?;
            // The file may have changed since setup checked it.
            if shape[0] != self.rows[idx] || shape[1..] != self.rest[t][..] {
                return Err(Error::format(
                    path,
                    format!(
                        "dataset `{name}` changed shape since setup (now {})",
                        crate::blob::shape_str(&shape)
                    ),
                ));
            }
            self.loaded.push(data);
        }
        self.row_order = (0..self.rows[idx]).collect();
        if self.shuffle {
            self.row_order.shuffle(&mut self.rng);
        }
        self.current_row = 0;
        Ok(())
    }

    /// Starts over from the seed: file order, first file, first row.
    fn reset(&mut self) -> Result<()> {
        self.rng = StdRng::seed_from_u64(self.seed);
        self.file_order = (0..self.files.len()).collect();
        if self.shuffle {
            self.file_order.shuffle(&mut self.rng);
        }
        self.current_file = 0;
        self.offset = 0;
        self.load()
    }

    /// Caffe's `Next`: one row on, loading the next file (or wrapping around) at a file's end.
    fn next(&mut self) -> Result<()> {
        self.current_row += 1;
        self.offset += 1;
        if self.current_row == self.row_order.len() {
            if self.files.len() > 1 {
                self.current_file += 1;
                if self.current_file == self.files.len() {
                    self.current_file = 0;
                    if self.shuffle {
                        self.file_order.shuffle(&mut self.rng);
                    }
                }
                self.load()?;
            } else {
                self.current_row = 0;
                if self.shuffle {
                    self.row_order.shuffle(&mut self.rng);
                }
            }
        }
        Ok(())
    }

    fn skip(&self) -> bool {
        self.offset % self.count != self.rank
    }
}

impl Layer for HDF5Data {
    fn type_name(&self) -> &'static str {
        "HDF5Data"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(0),
            min_top: Some(1),
            ..BlobCounts::default()
        }
    }
    fn setup(&mut self, _bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.scan()?;
        self.seed = ctx.rng.gen();
        self.reset()?;
        Ok(Vec::new())
    }
    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        for (t, rest) in top.iter_mut().zip(&self.rest) {
            let mut shape = vec![self.batch_size];
            shape.extend(rest);
            t.reshape(&shape);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        _bottom: &[&Blob],
        top: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        if self.loaded.len() != self.names.len() {
            self.load()?;
        }
        for i in 0..self.batch_size {
            while self.skip() {
                self.next()?;
            }
            let row = self.row_order[self.current_row];
            for (t, data) in top.iter_mut().zip(&self.loaded) {
                let dim = data.len() / self.row_order.len();
                t.data[i * dim..(i + 1) * dim].copy_from_slice(&data[row * dim..(row + 1) * dim]);
            }
            self.next()?;
        }
        Ok(())
    }
    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        if !self.files.is_empty() {
            // The files were read at setup; a failure here shows again at the next load.
            let _ = self.reset();
        }
    }
    fn shard(&mut self, rank: usize, count: usize) {
        self.count = count.max(1);
        self.rank = rank.min(self.count - 1);
    }
    fn dataset_len(&self) -> Option<usize> {
        Some(self.rows.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use crate::data::hdf5 as h5;
    use crate::layers::{self, Layer, SetupCtx};
    use crate::testing::{err_text, layer_param_from_yaml};
    use crate::{Blob, Result};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::path::Path;

    /// Writes `data` (rows x 2: [i, 10 i]) and `label` ([i]) for rows `from..to`; `label` as
    /// float64 when `f64_label`.
    fn write_rows(path: &Path, from: usize, to: usize, f64_label: bool) {
        let file = h5::create(path).unwrap();
        let data: Vec<f32> = (from..to)
            .flat_map(|i| [i as f32, 10.0 * i as f32])
            .collect();
        h5::write_f32(&file, path, "data", &[to - from, 2], &data).unwrap();
        let label: Vec<f64> = (from..to).map(|i| i as f64).collect();
        if f64_label {
            file.new_dataset_builder()
                .with_data(&label)
                .create("label")
                .unwrap();
        } else {
            let l: Vec<f32> = label.iter().map(|&v| v as f32).collect();
            h5::write_f32(&file, path, "label", &[to - from], &l).unwrap();
        }
    }

    fn list(dir: &Path, files: &[&str]) -> String {
        let p = dir.join("list.txt");
        std::fs::write(&p, files.join("\n") + "\n").unwrap();
        p.display().to_string()
    }

    fn build(source: &str, extra: &str, seed: u64) -> Result<(Box<dyn Layer>, Vec<Blob>)> {
        let yaml = format!(
            "type: HDF5Data\ntop: [data, label]\nhdf5_data_param: {{ source: '{source}', {extra} }}"
        );
        let mut l = layers::create(&layer_param_from_yaml(&yaml)?)?;
        let mut rng = StdRng::seed_from_u64(seed);
        l.setup(&[], &mut SetupCtx { rng: &mut rng })?;
        let mut tops = vec![Blob::default(), Blob::default()];
        l.reshape(&[], &mut tops.iter_mut().collect::<Vec<_>>())?;
        Ok((l, tops))
    }

    fn step(l: &mut Box<dyn Layer>, tops: &mut [Blob]) -> Vec<f32> {
        let mut t: Vec<&mut Blob> = tops.iter_mut().collect();
        l.forward(&[], &mut t, &mut []).unwrap();
        // Every row's data is [i, 10 i] for label i.
        for (row, &lab) in tops[0].data.chunks(2).zip(&tops[1].data) {
            assert_eq!(row, [lab, 10.0 * lab]);
        }
        tops[1].data.clone()
    }

    #[test]
    fn batches_run_through_the_files_and_wrap_around() {
        let dir = tempfile::tempdir().unwrap();
        write_rows(&dir.path().join("a.h5"), 0, 3, false);
        write_rows(&dir.path().join("b.h5"), 3, 5, true);
        // Paths in the list are relative to its folder.
        let src = list(dir.path(), &["a.h5", "b.h5"]);
        let (mut l, mut tops) = build(&src, "batch_size: 4", 1).unwrap();
        assert_eq!(tops[0].shape, vec![4, 2]);
        assert_eq!(tops[1].shape, vec![4]);
        assert_eq!(l.dataset_len(), Some(5));
        assert_eq!(step(&mut l, &mut tops), [0., 1., 2., 3.]);
        assert_eq!(step(&mut l, &mut tops), [4., 0., 1., 2.]);
        assert_eq!(step(&mut l, &mut tops), [3., 4., 0., 1.]);
    }

    #[test]
    fn shuffle_permutes_each_epoch_and_follows_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        write_rows(&dir.path().join("a.h5"), 0, 3, false);
        write_rows(&dir.path().join("b.h5"), 3, 7, false);
        let src = list(dir.path(), &["a.h5", "b.h5"]);
        let run = |seed: u64| {
            let (mut l, mut tops) = build(&src, "batch_size: 7, shuffle: true", seed).unwrap();
            (0..4).map(|_| step(&mut l, &mut tops)).collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
        for epoch in &a {
            let mut sorted = epoch.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, [0., 1., 2., 3., 4., 5., 6.]);
            // A file's rows come together: the first 3 or the first 4 are one file.
            let first_small = epoch[0] < 3.0;
            let k = if first_small { 3 } else { 4 };
            assert!(
                epoch[..k].iter().all(|&v| (v < 3.0) == first_small),
                "{epoch:?}"
            );
        }
        // Epochs differ (rows reshuffled at each load).
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        // Unshuffled, one file is read in order.
        let src1 = list(dir.path(), &["b.h5"]);
        let (mut l, mut tops) = build(&src1, "batch_size: 3", 1).unwrap();
        assert_eq!(step(&mut l, &mut tops), [3., 4., 5.]);
        assert_eq!(step(&mut l, &mut tops), [6., 3., 4.]);
    }

    #[test]
    fn mismatched_dims_name_the_file_and_dataset() {
        let dir = tempfile::tempdir().unwrap();
        write_rows(&dir.path().join("a.h5"), 0, 3, false);
        let b = dir.path().join("b.h5");
        let file = h5::create(&b).unwrap();
        h5::write_f32(&file, &b, "data", &[2, 3], &[0.0; 6]).unwrap();
        h5::write_f32(&file, &b, "label", &[2], &[0.0; 2]).unwrap();
        drop(file);
        let src = list(dir.path(), &["a.h5", "b.h5"]);
        let e = err_text(build(&src, "batch_size: 2", 1));
        assert!(e.contains("b.h5"), "{e}");
        assert!(
            e.contains("dataset `data` has shape 2x3; expected N x 2"),
            "{e}"
        );
    }

    #[test]
    fn missing_dataset_rows_mismatch_and_bad_lists_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_rows(&dir.path().join("a.h5"), 0, 3, false);
        let b = dir.path().join("b.h5");
        let file = h5::create(&b).unwrap();
        h5::write_f32(&file, &b, "data", &[2, 2], &[0.0; 4]).unwrap();
        drop(file);
        let e = err_text(build(
            &list(dir.path(), &["a.h5", "b.h5"]),
            "batch_size: 2",
            1,
        ));
        assert!(
            e.contains("b.h5") && e.contains("no dataset `label`"),
            "{e}"
        );
        assert!(e.contains("datasets: data"), "{e}");

        let c = dir.path().join("c.h5");
        let file = h5::create(&c).unwrap();
        h5::write_f32(&file, &c, "data", &[2, 2], &[0.0; 4]).unwrap();
        h5::write_f32(&file, &c, "label", &[3], &[0.0; 3]).unwrap();
        drop(file);
        let e = err_text(build(&list(dir.path(), &["c.h5"]), "batch_size: 2", 1));
        assert!(e.contains("`label` has 3 rows but `data` has 2"), "{e}");

        let e = err_text(build(&list(dir.path(), &["nope.h5"]), "batch_size: 2", 1));
        assert!(e.contains("nope.h5"), "{e}");
        std::fs::write(dir.path().join("junk.h5"), b"not hdf5").unwrap();
        let e = err_text(build(&list(dir.path(), &["junk.h5"]), "batch_size: 2", 1));
        assert!(
            e.contains("junk.h5") && e.contains("not a readable HDF5 file"),
            "{e}"
        );
        let e = err_text(build(&list(dir.path(), &[]), "batch_size: 2", 1));
        assert!(e.contains("lists no HDF5 files"), "{e}");
        let e = err_text(build(&list(dir.path(), &["a.h5"]), "batch_size: 0", 1));
        assert!(e.contains("batch_size must be positive"), "{e}");
    }
}
