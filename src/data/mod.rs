//! Reading data sets into batches: IDX files, Caffe LMDBs of `Datum`s, image lists, host memory;
//! Caffe's transforms (crop, mirror, mean, scale) plus crema's augmentations; a prefetch thread.
//!
//! Every source is a random-access [`Dataset`] of decoded [`Sample`]s (CHW, Caffe's BGR order,
//! pixel values 0-255 before scaling). A [`prefetch::Loader`] walks it in epochs (optionally
//! shuffled), transforms each sample and hands finished batches to a data layer.

pub mod augment;
pub mod db;
pub mod hdf5;
pub mod idx;
pub mod image_list;
pub mod leveldb;
pub mod lmdb;
pub mod mean;
pub mod photo;
pub mod prefetch;
pub mod seq_pairs;
pub mod text;
pub mod transform;
pub mod tuples;

use crate::Result;

/// One decoded example: `channels x height x width` values (CHW order) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Channels (1 for grey, 3 for BGR colour).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels * height * width` values, CHW, raw pixel scale (0-255 for images).
    pub data: Vec<f32>,
    /// Class label.
    pub label: i32,
}

impl Sample {
    /// `[channels, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
}

/// A random-access collection of samples. `get` takes `&self` so a batch can be decoded in
/// parallel; errors name the file and the record.
pub trait Dataset: Send + Sync {
    /// Number of records.
    fn len(&self) -> usize;
    /// True when there is no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decodes record `index` (< `len()`).
    fn get(&self, index: usize) -> Result<Sample>;
    /// True when decoding a record is costly (image files), so a batch is decoded on all cores;
    /// cheap records (IDX) are read on the data thread alone, leaving the cores to the solver.
    fn costly(&self) -> bool {
        false
    }
    /// What this data set is, for messages (usually its path).
    fn describe(&self) -> String;
}

/// Shape as `CxHxW`.
pub(crate) fn shape_text(s: [usize; 3]) -> String {
    format!("{}x{}x{}", s[0], s[1], s[2])
}
