//! `TextData` (crema extension, `text_data_param`): byte-level windows of a plain-text file for
//! character language models, in the time-major layout the recurrent layers read.
//!
//! Tops (each T x N): `data` (byte ids), `cont` (0 where a stream starts a new sequence, else 1)
//! and `label` (the next byte). N streams walk through the text at different offsets; each
//! batch continues where the previous one stopped (truncated BPTT: an LSTM's carried state goes
//! on with `cont` = 1). A stream that reaches the end restarts (at offset 0, or at a random
//! offset with `shuffle`) and marks the restart with `cont` = 0.

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `TextData` layer.
pub struct TextData {
    source: String,
    steps: usize,
    streams: usize,
    shuffle: bool,
    vocab: usize,
    text: Vec<u8>,
    /// Next window start of each stream, and whether that window starts a new sequence.
    pos: Vec<usize>,
    fresh: Vec<bool>,
    seed: u64,
    rng: StdRng,
    /// Data parallelism: this worker's streams are `rank * streams .. (rank + 1) * streams` of
    /// `count * streams` walked in step (so the workers' columns together are one batch of
    /// `count * streams`).
    rank: usize,
    count: usize,
}

/// Creates `TextData` from `text_data_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.text_data_param.clone().unwrap_or_default();
    crate::ensure!(
        !d.source().is_empty(),
        "text_data_param.source (a plain-text file) must be set"
    );
    crate::ensure!(
        d.time_steps() > 0 && d.batch_size() > 0,
        "text_data_param.time_steps and batch_size must be positive"
    );
    crate::ensure!(
        (1..=256).contains(&d.vocab_size()),
        "text_data_param.vocab_size must be in 1..=256 (ids are bytes), got {}",
        d.vocab_size()
    );
    Ok(Box::new(TextData {
        source: d.source().to_string(),
        steps: d.time_steps() as usize,
        streams: d.batch_size() as usize,
        shuffle: d.shuffle(),
        vocab: d.vocab_size() as usize,
        text: Vec::new(),
        pos: Vec::new(),
        fresh: Vec::new(),
        seed: 0,
        rng: StdRng::seed_from_u64(0),
        rank: 0,
        count: 1,
    }))
}

impl TextData {
    /// Where a stream (re)starts.
    fn restart(&mut self, stream: usize) -> usize {
        // A window needs T bytes plus the label after them.
        let room = self.text.len() - self.steps;
        if self.shuffle {
            self.rng.gen_range(0..room)
        } else if self.pos.len() < self.all_streams() {
            // Initial spread: streams start evenly spaced through the text.
            stream * room / self.all_streams()
        } else {
            0
        }
    }

    /// The streams of all data-parallel workers.
    fn all_streams(&self) -> usize {
        self.streams * self.count
    }

    fn reset(&mut self) {
        self.rng = StdRng::seed_from_u64(self.seed);
        self.pos.clear();
        self.fresh.clear();
        for n in 0..self.all_streams() {
            let p = self.restart(n);
            self.pos.push(p);
            self.fresh.push(true);
        }
    }
}

impl Layer for TextData {
    fn type_name(&self) -> &'static str {
        "TextData"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(0, 3)
    }
    fn setup(&mut self, _bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let text = crate::data::text::read_text(&self.source, self.steps, self.vocab)?;
        self.text = text;
        self.seed = ctx.rng.gen();
        self.reset();
        Ok(Vec::new())
    }
    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        for t in top.iter_mut() {
            t.reshape(&[self.steps, self.streams]);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        _bottom: &[&Blob],
        top: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        let (steps, streams) = (self.steps, self.streams);
        let mine = self.rank * streams..(self.rank + 1) * streams;
        for n in 0..self.all_streams() {
            let p = self.pos[n];
            if mine.contains(&n) {
                let col = n - mine.start;
                for t in 0..steps {
                    let i = t * streams + col;
                    top[0].data[i] = self.text[p + t] as f32;
                    top[1].data[i] = if t == 0 && self.fresh[n] { 0.0 } else { 1.0 };
                    top[2].data[i] = self.text[p + t + 1] as f32;
                }
            }
            let next = p + steps;
            if next + steps < self.text.len() {
                self.pos[n] = next;
                self.fresh[n] = false;
            } else {
                self.pos[n] = self.restart(n);
                self.fresh[n] = true;
            }
        }
        Ok(())
    }
    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        if !self.text.is_empty() {
            self.reset();
        }
    }
    fn shard(&mut self, rank: usize, count: usize) {
        self.count = count.max(1);
        self.rank = rank.min(self.count - 1);
        if !self.text.is_empty() {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::{self, Layer, SetupCtx};
    use crate::testing::{err_text, layer_param_from_yaml};
    use crate::Blob;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn build(text: &[u8], extra: &str) -> (Box<dyn Layer>, Vec<Blob>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, text).unwrap();
        let yaml = format!(
            "type: TextData\ntop: [data, cont, label]\ntext_data_param: {{ source: '{}', {extra} }}",
            path.display()
        );
        let mut l = layers::create(&layer_param_from_yaml(&yaml).unwrap()).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        l.setup(&[], &mut SetupCtx { rng: &mut rng }).unwrap();
        let mut tops = vec![Blob::default(), Blob::default(), Blob::default()];
        l.reshape(&[], &mut tops.iter_mut().collect::<Vec<_>>())
            .unwrap();
        (l, tops, dir)
    }

    fn step(l: &mut Box<dyn Layer>, tops: &mut [Blob]) {
        let mut t: Vec<&mut Blob> = tops.iter_mut().collect();
        l.forward(&[], &mut t, &mut []).unwrap();
    }

    fn ids(s: &str) -> Vec<f32> {
        s.bytes().map(|b| b as f32).collect()
    }

    #[test]
    fn windows_continue_across_batches_and_restart() {
        // 20 bytes, T = 3, N = 2, no shuffle: streams start at 0 and 17*1/2 = 8.
        let text = b"abcdefghijklmnopqrst";
        let (mut l, mut tops, _dir) = build(text, "time_steps: 3, batch_size: 2, shuffle: false");
        step(&mut l, &mut tops);
        assert_eq!(tops[0].shape, vec![3, 2]);
        // Time-major: [t0 s0, t0 s1, t1 s0, ...].
        assert_eq!(tops[0].data, ids("aibjck"));
        assert_eq!(tops[2].data, ids("bjckdl"));
        assert_eq!(tops[1].data, vec![0., 0., 1., 1., 1., 1.]);
        step(&mut l, &mut tops);
        assert_eq!(tops[0].data, ids("dlemfn"));
        assert_eq!(tops[1].data, vec![1.0; 6]);
        step(&mut l, &mut tops);
        assert_eq!(tops[0].data, ids("gohpiq"));
        // Stream 1 would need bytes 17..=20: it restarts at 0 with cont = 0.
        step(&mut l, &mut tops);
        assert_eq!(tops[0].data, ids("jakblc"));
        assert_eq!(tops[2].data, ids("kblcmd"));
        assert_eq!(tops[1].data, vec![1., 0., 1., 1., 1., 1.]);
    }

    #[test]
    fn shuffle_is_deterministic_after_reseed() {
        let text: Vec<u8> = (0..200u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        let (mut l, mut tops, _dir) = build(&text, "time_steps: 4, batch_size: 3");
        let mut first = Vec::new();
        for _ in 0..5 {
            step(&mut l, &mut tops);
            first.push(tops[0].data.clone());
        }
        l.reseed(7);
        step(&mut l, &mut tops);
        let a = tops[0].data.clone();
        l.reseed(7);
        step(&mut l, &mut tops);
        assert_eq!(tops[0].data, a);
        // Labels are always the next byte.
        for n in 0..3 {
            for t in 0..3 {
                assert_eq!(tops[2].data[t * 3 + n], tops[0].data[(t + 1) * 3 + n]);
            }
        }
    }

    #[test]
    fn shards_are_the_columns_of_the_larger_batch() {
        // Batch 4 against shards 0 and 1 of 2 at batch 2, shuffled restarts included.
        let text: Vec<u8> = (0..60u32).map(|i| b'a' + (i * 11 % 26) as u8).collect();
        let (mut whole, mut wt, _d0) = build(&text, "time_steps: 5, batch_size: 4");
        let mut parts: Vec<_> = (0..2)
            .map(|r| {
                let (mut l, t, d) = build(&text, "time_steps: 5, batch_size: 2");
                l.shard(r, 2);
                (l, t, d)
            })
            .collect();
        for _ in 0..12 {
            step(&mut whole, &mut wt);
            for (l, t, _) in parts.iter_mut() {
                step(l, t);
            }
            for (top, w) in wt.iter().enumerate().take(3) {
                for t in 0..5 {
                    let row = &w.data[t * 4..t * 4 + 4];
                    assert_eq!(row[..2], parts[0].1[top].data[t * 2..t * 2 + 2]);
                    assert_eq!(row[2..], parts[1].1[top].data[t * 2..t * 2 + 2]);
                }
            }
        }
    }

    #[test]
    fn errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.txt");
        std::fs::write(&path, b"abc").unwrap();
        let mk = |extra: &str| {
            let yaml = format!(
                "type: TextData\ntext_data_param: {{ source: '{}', {extra} }}",
                path.display()
            );
            let mut l = layers::create(&layer_param_from_yaml(&yaml).unwrap()).unwrap();
            let mut rng = StdRng::seed_from_u64(1);
            l.setup(&[], &mut SetupCtx { rng: &mut rng }).map(|_| ())
        };
        assert!(err_text(mk("time_steps: 3")).contains("at least 4"));
        assert!(err_text(mk("time_steps: 2, vocab_size: 98")).contains("outside vocab_size"));
        let e = err_text(
            layers::create(
                &layer_param_from_yaml(
                    "type: TextData\ntext_data_param: { source: '/nonexistent/x.txt' }",
                )
                .unwrap(),
            )
            .and_then(|mut l| {
                let mut rng = StdRng::seed_from_u64(1);
                l.setup(&[], &mut SetupCtx { rng: &mut rng }).map(|_| ())
            }),
        );
        assert!(e.contains("/nonexistent/x.txt"), "{e}");
    }
}
