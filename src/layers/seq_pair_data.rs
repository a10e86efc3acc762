//! `SeqPairData` (crema extension, `seq_pair_data_param`): batches of `source<TAB>target` pairs
//! (see `data/seq_pairs.rs`) for an encoder-decoder, in the time-major layout of the recurrent
//! layers. Tops: `src` (Ts x N byte ids, right-aligned, PAD before), `src_cont` (Ts x N: 0 up
//! to each source's first byte, 1 after), `tgt_in` (Tt x N: GO then the target, the decoder's
//! teacher-forced input) and `tgt_out` (Tt x N: the target then EOS, -1 after it for
//! `ignore_label: -1`). Each batch takes the next N pairs, reshuffled every epoch with `shuffle`.

use super::{BlobCounts, Layer, SetupCtx};
use crate::data::seq_pairs::{put_source, read_pairs, Pair, EOS, GO};
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// `SeqPairData` layer.
pub struct SeqPairData {
    source: String,
    batch: usize,
    src_steps: usize,
    tgt_steps: usize,
    shuffle: bool,
    pairs: Vec<Pair>,
    order: Vec<usize>,
    pos: usize,
    seed: u64,
    rng: StdRng,
}

/// Creates `SeqPairData` from `seq_pair_data_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.seq_pair_data_param.clone().unwrap_or_default();
    crate::ensure!(
        !d.source().is_empty(),
        "seq_pair_data_param.source (a file of source<TAB>target lines) must be set"
    );
    crate::ensure!(
        d.batch_size() > 0 && d.source_steps() > 0 && d.target_steps() > 1,
        "seq_pair_data_param: batch_size and source_steps must be positive, target_steps at least 2"
    );
    Ok(Box::new(SeqPairData {
        source: d.source().to_string(),
        batch: d.batch_size() as usize,
        src_steps: d.source_steps() as usize,
        tgt_steps: d.target_steps() as usize,
        shuffle: d.shuffle(),
        pairs: Vec::new(),
        order: Vec::new(),
        pos: 0,
        seed: 0,
        rng: StdRng::seed_from_u64(0),
    }))
}

impl SeqPairData {
    fn reset(&mut self) {
        self.rng = StdRng::seed_from_u64(self.seed);
        self.order = (0..self.pairs.len()).collect();
        self.pos = 0;
        if self.shuffle {
            self.order.shuffle(&mut self.rng);
        }
    }

    fn next_pair(&mut self) -> usize {
        if self.pos == self.order.len() {
            self.pos = 0;
            if self.shuffle {
                self.order.shuffle(&mut self.rng);
            }
        }
        self.pos += 1;
        self.order[self.pos - 1]
    }
}

impl Layer for SeqPairData {
    fn type_name(&self) -> &'static str {
        "SeqPairData"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(0, 4)
    }
    fn setup(&mut self, _bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.pairs = read_pairs(&self.source, self.src_steps, self.tgt_steps)?;
        self.seed = ctx.rng.gen();
        self.reset();
        Ok(Vec::new())
    }
    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        for (i, t) in top.iter_mut().enumerate() {
            let steps = if i < 2 {
                self.src_steps
            } else {
                self.tgt_steps
            };
            t.reshape(&[steps, self.batch]);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        _bottom: &[&Blob],
        top: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        let n = self.batch;
        for j in 0..n {
            let k = self.next_pair();
            let p = &self.pairs[k];
            let (s, rest) = top.split_at_mut(1);
            put_source(&mut s[0].data, &mut rest[0].data, n, j, &p.source);
            for t in 0..self.tgt_steps {
                let i = t * n + j;
                let tin = match t {
                    0 => Some(GO),
                    _ => p.target.get(t - 1).copied(),
                };
                let tout = p
                    .target
                    .get(t)
                    .copied()
                    .or((t == p.target.len()).then_some(EOS));
                rest[1].data[i] = tin.map_or(crate::data::seq_pairs::PAD as f32, |b| b as f32);
                rest[2].data[i] = tout.map_or(-1.0, |b| b as f32);
            }
        }
        Ok(())
    }
    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        if !self.pairs.is_empty() {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::{self, SetupCtx};
    use crate::testing::layer_param_from_yaml;
    use crate::Blob;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn batches_are_time_major_with_markers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.tsv");
        std::fs::write(&path, "12\t21\n3\t3\n").unwrap();
        let yaml = format!(
            "type: SeqPairData\ntop: [src, src_cont, tgt_in, tgt_out]\nseq_pair_data_param: {{ source: '{}', batch_size: 3, source_steps: 3, target_steps: 3, shuffle: false }}",
            path.display()
        );
        let mut l = layers::create(&layer_param_from_yaml(&yaml).unwrap()).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        l.setup(&[], &mut SetupCtx { rng: &mut rng }).unwrap();
        let mut tops = [
            Blob::default(),
            Blob::default(),
            Blob::default(),
            Blob::default(),
        ];
        let mut t: Vec<&mut Blob> = tops.iter_mut().collect();
        l.reshape(&[], &mut t).unwrap();
        l.forward(&[], &mut t, &mut []).unwrap();
        // Streams: pair 0 ("12"), pair 1 ("3"), pair 0 again (the epoch wraps).
        let (one, two, three) = (49.0, 50.0, 51.0);
        assert_eq!(tops[0].shape, vec![3, 3]);
        assert_eq!(
            tops[0].data,
            [0.0, 0.0, 0.0, one, 0.0, one, two, three, two]
        );
        assert_eq!(tops[1].data, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        assert_eq!(
            tops[2].data,
            [2.0, 2.0, 2.0, two, three, two, one, 0.0, one]
        );
        assert_eq!(
            tops[3].data,
            [two, three, two, one, 10.0, one, 10.0, -1.0, 10.0]
        );
    }
}
