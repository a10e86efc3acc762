//! Pairs and triplets of labelled records for metric learning (`idx_data_param.tuples`): record
//! `i` of a [`TupleDataset`] stacks record `i` of the inner data set with one (PAIRS) or two
//! (TRIPLETS) partners along the channels, as Caffe's `mnist_siamese` stores `pair_data`.
//!
//! PAIRS: the partner shares record `i`'s class with probability 1/2, and the label is 1 for a
//! same-class pair, else 0 (the `sim` input of `ContrastiveLoss`). TRIPLETS: anchor `i`, a
//! positive of the same class (another record when the class has one), a negative of another
//! class; the label is the anchor's class. Partners are a fixed function of the seed and `i`
//! (as Caffe's converted pair databases are fixed), so every epoch sees the same tuples.

use super::{Dataset, Sample};
use crate::{Error, Result};
use std::sync::Arc;

/// How many records a tuple stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuples {
    /// Two: the label says whether they share a class.
    Pairs,
    /// Three: anchor, positive, negative; the label is the anchor's class.
    Triplets,
}

/// A data set of pairs or triplets over a labelled inner data set.
pub struct TupleDataset {
    inner: Arc<dyn Dataset>,
    kind: Tuples,
    labels: Vec<i32>,
    /// Record indices of each class, indexed by position in `classes`.
    by_class: Vec<Vec<usize>>,
    classes: Vec<i32>,
    seed: u64,
}

/// SplitMix64: a well-mixed 64-bit value from `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl TupleDataset {
    /// Reads every label of `inner` and indexes the records by class; needs at least two classes.
    pub fn new(inner: Arc<dyn Dataset>, kind: Tuples, seed: u64) -> Result<Self> {
        let labels: Vec<i32> = (0..inner.len())
            .map(|i| inner.get(i).map(|s| s.label))
            .collect::<Result<_>>()?;
        let mut classes: Vec<i32> = labels.clone();
        classes.sort_unstable();
        classes.dedup();
        if classes.len() < 2 {
            return Err(Error::Invalid(format!(
                "{}: pairs and triplets need labels of at least two classes, found {} (is the \
                 label file set?)",
                inner.describe(),
                classes.len()
            )));
        }
        let mut by_class = vec![Vec::new(); classes.len()];
        for (i, l) in labels.iter().enumerate() {
            if let Ok(c) = classes.binary_search(l) {
                by_class[c].push(i);
            }
        }
        Ok(TupleDataset {
            inner,
            kind,
            labels,
            by_class,
            classes,
            seed,
        })
    }

    fn class_of(&self, i: usize) -> usize {
        self.classes.binary_search(&self.labels[i]).unwrap_or(0)
    }

    /// A record of class position `c`, other than `not` when the class has another; `r` random.
    fn pick_same(&self, c: usize, not: usize, r: u64) -> usize {
        let list = &self.by_class[c];
        if list.len() < 2 {
            return list[0];
        }
        let k = (r % (list.len() as u64 - 1)) as usize;
        let j = list[k];
        if j == not {
            list[list.len() - 1]
        } else {
            j
        }
    }

    /// A record of a class other than position `c`; `r` random.
    fn pick_other(&self, c: usize, r: u64) -> usize {
        let k = self.classes.len() as u64 - 1;
        let mut oc = (r % k) as usize;
        if oc >= c {
            oc += 1;
        }
        let list = &self.by_class[oc];
        list[(mix(r) % list.len() as u64) as usize]
    }

    /// The record indices of tuple `i` and its label.
    pub fn members(&self, i: usize) -> (Vec<usize>, i32) {
        let c = self.class_of(i);
        let r = mix(self.seed ^ mix(i as u64));
        match self.kind {
            Tuples::Pairs => {
                let same = r & 1 == 0;
                let j = if same {
                    self.pick_same(c, i, r >> 1)
                } else {
                    self.pick_other(c, r >> 1)
                };
                (vec![i, j], i32::from(self.labels[j] == self.labels[i]))
            }
            Tuples::Triplets => {
                let p = self.pick_same(c, i, r);
                let n = self.pick_other(c, mix(r));
                (vec![i, p, n], self.labels[i])
            }
        }
    }
}

impl Dataset for TupleDataset {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (ids, label) = self.members(index);
        let parts: Vec<Sample> = ids
            .iter()
            .map(|&j| self.inner.get(j))
            .collect::<Result<_>>()?;
        let first = &parts[0];
        let mut data = Vec::with_capacity(first.data.len() * parts.len());
        for p in &parts {
            data.extend_from_slice(&p.data);
        }
        Ok(Sample {
            channels: first.channels * parts.len(),
            height: first.height,
            width: first.width,
            data,
            label,
        })
    }

    fn costly(&self) -> bool {
        self.inner.costly()
    }

    fn describe(&self) -> String {
        format!("{} ({:?})", self.inner.describe(), self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Toy;
    impl Dataset for Toy {
        fn len(&self) -> usize {
            40
        }
        fn get(&self, i: usize) -> Result<Sample> {
            Ok(Sample {
                channels: 1,
                height: 1,
                width: 2,
                data: vec![i as f32, -(i as f32)],
                label: (i % 4) as i32,
            })
        }
        fn describe(&self) -> String {
            "toy".into()
        }
    }

    #[test]
    fn pairs_are_balanced_and_labelled_by_class_agreement() {
        let d = TupleDataset::new(Arc::new(Toy), Tuples::Pairs, 7).unwrap();
        let mut same = 0;
        for i in 0..40 {
            let s = d.get(i).unwrap();
            assert_eq!((s.channels, s.data.len()), (2, 4));
            assert_eq!(s.data[..2], [i as f32, -(i as f32)]);
            let j = s.data[2] as usize;
            assert_eq!(s.label, i32::from(j % 4 == i % 4));
            same += s.label;
            if s.label == 1 {
                assert_ne!(i, j, "a same-class partner is another record");
            }
        }
        assert!((10..=30).contains(&same), "{same} of 40 same-class pairs");
        // Fixed by the seed.
        let again = TupleDataset::new(Arc::new(Toy), Tuples::Pairs, 7).unwrap();
        assert_eq!(again.members(5), d.members(5));
    }

    #[test]
    fn triplets_have_a_positive_and_a_negative() {
        let d = TupleDataset::new(Arc::new(Toy), Tuples::Triplets, 3).unwrap();
        for i in 0..40 {
            let (m, label) = d.members(i);
            assert_eq!(label, (i % 4) as i32);
            assert_eq!(m[0], i);
            assert!(m[1] != i && m[1] % 4 == i % 4);
            assert_ne!(m[2] % 4, i % 4);
        }
        assert_eq!(d.get(0).unwrap().channels, 3);
    }
}
