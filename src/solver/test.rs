//! Testing: [`score`] averages a net's outputs over passes (Caffe's `Test` arithmetic, also
//! used by `crema test`); `Solver::test` runs a test net with the train net's weights.

use super::{Event, FeedCtx, Output, Solver};
use crate::proto::Phase;
use crate::{Net, Result};

/// Runs `passes` forward passes of `net` (calling `feed(net, pass)` before each) and returns
/// each output blob's element-wise mean and the mean loss (Caffe's test averaging).
pub fn score(
    net: &mut Net,
    passes: usize,
    mut feed: impl FnMut(&mut Net, usize) -> Result<()>,
) -> Result<(Vec<Output>, f32)> {
    let mut sums: Vec<(String, Vec<f64>, f32)> = Vec::new();
    let mut loss_sum = 0.0f64;
    for k in 0..passes {
        feed(net, k)?;
        let loss = net.forward()?;
        loss_sum += loss as f64;
        let outs = net.outputs();
        if sums.is_empty() {
            sums = outs
                .iter()
                .map(|(n, b)| {
                    (
                        n.to_string(),
                        b.data.iter().map(|&v| v as f64).collect(),
                        net.blob_loss_weight(n),
                    )
                })
                .collect();
        } else {
            for ((_, acc, _), (_, b)) in sums.iter_mut().zip(&outs) {
                for (a, &v) in acc.iter_mut().zip(&b.data) {
                    *a += v as f64;
                }
            }
        }
    }
    let n = passes.max(1) as f64;
    let outputs = sums
        .into_iter()
        .map(|(name, acc, w)| Output {
            name,
            values: acc.iter().map(|&a| (a / n) as f32).collect(),
            loss_weight: w,
        })
        .collect();
    Ok((outputs, (loss_sum / n) as f32))
}

impl Solver {
    /// Runs every test net (Caffe's `TestAll`).
    pub fn test_all(&mut self) -> Result<Vec<Vec<Output>>> {
        let mut all = Vec::new();
        for i in 0..self.test_nets.len() {
            all.push(self.test(i)?);
        }
        Ok(all)
    }

    /// Runs test net `i` for `test_iter[i]` passes with the train net's current weights and
    /// returns each output blob's mean (Caffe's `Test`).
    pub fn test(&mut self, i: usize) -> Result<Vec<Output>> {
        let iter = self.iter;
        self.emit(&Event::Testing { iter, net: i });
        self.test_nets[i].copy_params_from_net(&self.net)?;
        let passes = self.param.test_iter.get(i).copied().unwrap_or(0).max(0) as usize;
        let feeder = &mut self.feeder;
        let (mut outputs, loss) = score(&mut self.test_nets[i], passes, |n, k| {
            let ctx = FeedCtx {
                phase: Phase::Test,
                net: i,
                iter,
                pass: k,
            };
            match feeder.as_mut() {
                Some(f) => f(n, &ctx),
                None => Ok(()),
            }
        })?;
        if self.param.test_compute_loss() {
            outputs.push(Output {
                name: "loss".into(),
                values: vec![loss],
                loss_weight: 0.0,
            });
        }
        self.emit(&Event::Tested {
            iter,
            net: i,
            outputs: &outputs,
        });
        Ok(outputs)
    }
}
