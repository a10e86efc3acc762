//! Batches made on a background thread: a [`Loader`] walks a [`Dataset`] in epochs (shuffled
//! each epoch when asked, after Caffe's `rand_skip`), decodes and transforms each batch (samples
//! in parallel) and queues up to `prefetch` finished batches. Everything random comes from one
//! seed, so a given seed gives the same batches on every run. An error on the thread arrives
//! as the error of the next batch; dropping the loader stops the thread. The layer that hands
//! the batches to a net is `layers::loader::LoaderLayer`.

use super::transform::Transformer;
use super::{shape_text, Dataset, Sample};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A finished batch: the data top's shape `[N, C, H, W]`, its values, and N labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch, channels, height, width]`.
    pub shape: Vec<usize>,
    /// Transformed values.
    pub data: Vec<f32>,
    /// One label per sample.
    pub labels: Vec<f32>,
}

/// How a loader walks its data set.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    /// Samples per batch (> 0).
    pub batch_size: usize,
    /// Reshuffle the order at the start of every epoch.
    pub shuffle: bool,
    /// Start at a random record in `[0, rand_skip)` (Caffe's `rand_skip`).
    pub rand_skip: usize,
    /// Finished batches queued ahead (at least 1).
    pub prefetch: usize,
}

/// Worker `rank` of `count` data-parallel workers. Each worker walks the record stream of one
/// loader with `count` x `batch_size` (same order, same shuffles, same per-sample random
/// choices) and keeps positions `rank * batch_size .. (rank + 1) * batch_size` of every such
/// batch, so the workers' batches concatenated in rank order are exactly the batch one process
/// with the larger batch reads (Caffe's round-robin `DataReader`). Only the kept records are
/// read and transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rank: 0, count: 1 }
    }
}

/// The single-threaded batch maker the background thread runs.
struct Producer {
    ds: Arc<dyn Dataset>,
    tf: Arc<Transformer>,
    cfg: LoaderConfig,
    shard: Shard,
    order: Vec<usize>,
    pos: usize,
    rng: StdRng,
}

impl Producer {
    fn new(
        ds: Arc<dyn Dataset>,
        tf: Arc<Transformer>,
        cfg: LoaderConfig,
        shard: Shard,
        seed: u64,
    ) -> Self {
        let n = ds.len();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        if cfg.shuffle {
            order.shuffle(&mut rng);
        }
        let pos = if cfg.rand_skip > 0 {
            rng.gen_range(0..cfg.rand_skip) % n
        } else {
            0
        };
        Producer {
            ds,
            tf,
            cfg,
            shard,
            order,
            pos,
            rng,
        }
    }

    fn next_index(&mut self) -> usize {
        if self.pos >= self.order.len() {
            self.pos = 0;
            if self.cfg.shuffle {
                self.order.shuffle(&mut self.rng);
            }
        }
        self.pos += 1;
        self.order[self.pos - 1]
    }

    fn make(&mut self) -> Result<Batch> {
        let bs = self.cfg.batch_size;
        let Shard { rank, count } = self.shard;
        // Every worker draws the whole larger batch (so all stay on one stream), then keeps
        // its part.
        let mut picks: Vec<(usize, u64)> = (0..bs * count.max(1))
            .map(|_| {
                let i = self.next_index();
                (i, self.rng.gen())
            })
            .collect();
        picks.drain(..rank * bs);
        picks.truncate(bs);
        let ds = &self.ds;
        let samples: Vec<Sample> = if ds.costly() {
            picks
                .par_iter()
                .map(|&(i, _)| ds.get(i))
                .collect::<Result<_>>()?
        } else {
            picks
                .iter()
                .map(|&(i, _)| ds.get(i))
                .collect::<Result<_>>()?
        };
        let first = samples[0].shape();
        if let Some((k, s)) = samples.iter().enumerate().find(|(_, s)| s.shape() != first) {
            return Err(Error::Invalid(format!(
                "{}: record {} is {} but record {} in the same batch is {}; a batch needs one \
                 size (set new_height/new_width, or a crop_size)",
                ds.describe(),
                picks[k].0,
                shape_text(s.shape()),
                picks[0].0,
                shape_text(first)
            )));
        }
        let out = self
            .tf
            .output_shape(first)
            .map_err(|e| Error::Invalid(format!("{}: {e}", ds.describe())))?;
        let per: usize = out.iter().product();
        let mut data = vec![0f32; bs * per];
        let tf = &self.tf;
        let one = |((o, s), &(_, seed)): ((&mut [f32], &Sample), &(usize, u64))| {
            tf.apply(s, &mut StdRng::seed_from_u64(seed), o)
        };
        if ds.costly() {
            data.par_chunks_mut(per)
                .zip(samples.par_iter())
                .zip(picks.par_iter())
                .try_for_each(one)?;
        } else {
            data.chunks_mut(per)
                .zip(samples.iter())
                .zip(picks.iter())
                .try_for_each(one)?;
        }
        Ok(Batch {
            shape: vec![bs, out[0], out[1], out[2]],
            data,
            labels: samples.iter().map(|s| s.label as f32).collect(),
        })
    }
}

/// The running background thread and its queue.
struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetcher {
    fn spawn(mut p: Producer, depth: usize) -> Result<Self> {
        let (tx, rx) = sync_channel(depth.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("crema-data".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let b = p.make();
                    let failed = b.is_err();
                    if tx.send(b).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the data thread: {e}")))?;
        Ok(Prefetcher {
            rx: Some(rx),
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes a thread blocked on a full queue.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A data set, a transform and a walking order, producing batches on a background thread.
pub struct Loader {
    ds: Arc<dyn Dataset>,
    tf: Arc<Transformer>,
    cfg: LoaderConfig,
    shard: Shard,
    top_shape: Vec<usize>,
    thread: Option<Prefetcher>,
    failure: Option<String>,
}

impl Loader {
    /// Checks the configuration and works out the top shape from the first record.
    pub fn new(ds: Arc<dyn Dataset>, tf: Transformer, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(Error::config("batch_size must be positive"));
        }
        if ds.is_empty() {
            return Err(Error::config(format!("{}: no records", ds.describe())));
        }
        let first = ds.get(0)?;
        let out = tf
            .output_shape(first.shape())
            .map_err(|e| Error::config(format!("{}: {e}", ds.describe())))?;
        Ok(Loader {
            ds,
            tf: Arc::new(tf),
            cfg,
            shard: Shard::default(),
            top_shape: vec![cfg.batch_size, out[0], out[1], out[2]],
            thread: None,
            failure: None,
        })
    }

    /// The data top's shape for the first record's size: `[batch, C, H, W]`.
    pub fn top_shape(&self) -> &[usize] {
        &self.top_shape
    }

    /// The underlying data set.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.ds
    }

    /// Reads worker `shard.rank`'s share from the next (re)start on (see [`Shard`]).
    pub fn set_shard(&mut self, shard: Shard) {
        self.shard = Shard {
            rank: shard.rank.min(shard.count.max(1) - 1),
            count: shard.count.max(1),
        };
    }

    /// (Re)starts the background thread from the beginning, with every random choice drawn
    /// from `seed`. Batches queued by an earlier start are dropped.
    pub fn start(&mut self, seed: u64) -> Result<()> {
        self.thread = None;
        self.failure = None;
        let p = Producer::new(self.ds.clone(), self.tf.clone(), self.cfg, self.shard, seed);
        self.thread = Some(Prefetcher::spawn(p, self.cfg.prefetch)?);
        Ok(())
    }

    /// [`Loader::start`] for callers that cannot report an error now: a failure to start
    /// becomes the error of the next batch.
    pub fn restart(&mut self, seed: u64) {
        if let Err(e) = self.start(seed) {
            self.failure = Some(e.to_string());
        }
    }

    /// The next batch (waits for the thread if the queue is empty). Starts the thread with seed 0
    /// if `start` was never called.
    pub fn next_batch(&mut self) -> Result<Batch> {
        if let Some(f) = &self.failure {
            return Err(Error::Invalid(format!("data loading stopped earlier: {f}")));
        }
        if self.thread.is_none() {
            self.start(0)?;
        }
        let rx = self.thread.as_ref().and_then(|t| t.rx.as_ref());
        let got = match rx {
            Some(rx) => rx.recv().ok(),
            None => None,
        };
        match got {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) => {
                self.failure = Some(e.to_string());
                self.thread = None;
                Err(e)
            }
            None => {
                self.thread = None;
                let m = "the data thread ended without a batch (it panicked)".to_string();
                self.failure = Some(m.clone());
                Err(Error::Invalid(m))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records 0..n of one pixel each holding its index; record `bad` fails.
    struct Counting {
        n: usize,
        bad: Option<usize>,
    }
    impl Dataset for Counting {
        fn len(&self) -> usize {
            self.n
        }
        fn get(&self, i: usize) -> Result<Sample> {
            if Some(i) == self.bad {
                return Err(Error::format("counting", format!("record {i} is broken")));
            }
            Ok(Sample {
                channels: 1,
                height: 1,
                width: 1,
                data: vec![i as f32],
                label: (i % 3) as i32,
            })
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    fn loader(n: usize, bad: Option<usize>, shuffle: bool, skip: usize) -> Loader {
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle,
            rand_skip: skip,
            prefetch: 2,
        };
        Loader::new(Arc::new(Counting { n, bad }), Transformer::identity(), cfg).unwrap()
    }

    fn take(l: &mut Loader, k: usize) -> Vec<f32> {
        (0..k).flat_map(|_| l.next_batch().unwrap().data).collect()
    }

    #[test]
    fn sequential_wraps_around_epochs() {
        let mut l = loader(6, None, false, 0);
        l.start(1).unwrap();
        assert_eq!(
            take(&mut l, 3),
            vec![0., 1., 2., 3., 4., 5., 0., 1., 2., 3., 4., 5.]
        );
        let b = l.next_batch().unwrap();
        assert_eq!(b.shape, vec![4, 1, 1, 1]);
        assert_eq!(b.labels, vec![0., 1., 2., 0.]);
    }

    #[test]
    fn shuffle_is_a_permutation_per_epoch_and_seeded() {
        let mut l = loader(8, None, true, 0);
        l.start(5).unwrap();
        let a = take(&mut l, 4);
        for epoch in a.chunks(8) {
            let mut e = epoch.to_vec();
            e.sort_by(f32::total_cmp);
            assert_eq!(e, (0..8).map(|v| v as f32).collect::<Vec<_>>());
        }
        assert_ne!(a[..8], a[8..16], "reshuffled each epoch");
        l.start(5).unwrap();
        assert_eq!(take(&mut l, 4), a, "same seed, same order");
        l.start(6).unwrap();
        assert_ne!(take(&mut l, 4), a);
    }

    #[test]
    fn shards_concatenate_to_the_larger_batch() {
        // One loader with batch 8 against two with batch 4 and shards 0 and 1 of 2: shuffled
        // epochs over 10 records (so batches straddle epochs), rand_skip, per-sample seeds.
        let cfg = |batch_size| LoaderConfig {
            batch_size,
            shuffle: true,
            rand_skip: 3,
            prefetch: 1,
        };
        let make = |batch_size, shard| {
            let mut l = Loader::new(
                Arc::new(Counting { n: 10, bad: None }),
                Transformer::identity(),
                cfg(batch_size),
            )
            .unwrap();
            l.set_shard(shard);
            l.start(42).unwrap();
            l
        };
        let mut whole = make(8, Shard::default());
        let mut r0 = make(4, Shard { rank: 0, count: 2 });
        let mut r1 = make(4, Shard { rank: 1, count: 2 });
        for _ in 0..5 {
            let w = whole.next_batch().unwrap();
            let (a, b) = (r0.next_batch().unwrap(), r1.next_batch().unwrap());
            assert_eq!(a.shape, vec![4, 1, 1, 1]);
            assert_eq!([a.data, b.data].concat(), w.data);
            assert_eq!([a.labels, b.labels].concat(), w.labels);
        }
    }

    #[test]
    fn rand_skip_starts_inside_the_first_records() {
        let starts: std::collections::HashSet<u32> = (0..40)
            .map(|s| {
                let mut l = loader(100, None, false, 5);
                l.start(s).unwrap();
                l.next_batch().unwrap().data[0] as u32
            })
            .collect();
        assert!(
            starts.iter().all(|&s| s < 5) && starts.len() > 1,
            "{starts:?}"
        );
    }

    #[test]
    fn errors_surface_and_do_not_hang() {
        let mut l = loader(10, Some(6), false, 0);
        l.start(0).unwrap();
        assert!(l.next_batch().is_ok());
        let e = l.next_batch().unwrap_err().to_string();
        assert!(e.contains("record 6 is broken"), "{e}");
        let e2 = l.next_batch().unwrap_err().to_string();
        assert!(e2.contains("stopped earlier"), "{e2}");
    }

    #[test]
    fn dropping_a_loader_with_a_full_queue_returns() {
        // The thread is running (a batch came) and goes on filling its queue of 2; whether it
        // is blocked on the full queue or still working, dropping must stop it and return.
        let mut l = loader(1000, None, false, 0);
        l.start(0).unwrap();
        assert_eq!(l.next_batch().unwrap().data, [0., 1., 2., 3.]);
        drop(l);
    }
}
