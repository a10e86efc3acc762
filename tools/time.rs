//! `crema time`: Caffe's `caffe time`. One warm-up forward+backward, then `--iterations` timed
//! passes; per-layer average forward/backward milliseconds, totals, and GFLOP/s where a layer
//! knows its forward FLOPs (backward of a conv/inner-product layer costs about twice that).
//! `--phase TEST` times inference: forward only (backward times are 0), and the net holds no
//! gradient memory.

use crate::check::{fill_inputs, parse_phase};
use crate::Failure;
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (YAML or Caffe prototxt).
    #[arg(long)]
    model: String,
    /// Timed forward+backward iterations (after one warm-up).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Phase to build (TRAIN or TEST; TEST times forward only).
    #[arg(long, default_value = "TRAIN", value_parser = parse_phase)]
    phase: Phase,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    if a.iterations == 0 {
        return Err(Failure::User(anyhow::anyhow!(
            "--iterations must be at least 1"
        )));
    }
    // Under `mpirun` every rank times its own copy and the gradient allreduce between ranks
    // (communication) is timed beside the compute; rank 0 reports.
    let cluster = crema::dist::Cluster::from_env()?;
    let root = cluster.as_ref().is_none_or(|c| c.is_root());
    let param = crema::load_net(&a.model)?;
    let mut rng = StdRng::seed_from_u64(1701);
    let mut net = crema::Net::for_phase(&param, a.phase, &mut rng)?;
    // TEST is inference: forward only, so the net never allocates gradient memory.
    let backward = a.phase != Phase::Test;
    let has_loss = net
        .layers()
        .iter()
        .any(|l| l.loss_weight.iter().any(|&w| w != 0.0));
    if backward && !has_loss && !param.force_backward() {
        // A deploy net has no loss, so Caffe would skip every backward; time the backward
        // computation anyway (as `force_backward: true` does), since that is what is asked.
        eprintln!("note: the net has no loss; timing backward with force_backward: true");
        net.force_backward();
    }
    if backward {
        // Nothing reads an activation gradient here: backward passes its buffers along.
        net.reuse_dead_diffs(&[])?;
    }
    drop(param);
    fill_inputs(&mut net, &mut rng);
    eprintln!(
        "warm-up: one forward{} pass",
        if backward { " and backward" } else { "" }
    );
    net.forward()?;
    if backward {
        net.backward()?;
    }
    net.reset_timers();
    let (mut fwd, mut bwd, mut comm) = (0.0f64, 0.0f64, 0.0f64);
    let all = Instant::now();
    for i in 0..a.iterations {
        let t = Instant::now();
        net.forward()?;
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        if backward {
            net.backward()?;
        }
        let b = t.elapsed().as_secs_f64();
        fwd += f;
        bwd += b;
        if let Some(c) = &cluster {
            comm += c.average_gradients(&mut net)?;
        }
        if root && !a.json && (i + 1) % 10 == 0 {
            eprintln!(
                "iteration {}: forward-backward {:.3} ms",
                i + 1,
                (f + b) * 1e3
            );
        }
    }
    let total = all.elapsed().as_secs_f64();
    let n = a.iterations as f64;
    let mut rows = Vec::new();
    for l in net.layers() {
        let fms = l.forward_time / n * 1e3;
        let bms = l.backward_time / n * 1e3;
        let bottoms: Vec<&crema::Blob> = l.bottom.iter().map(|&b| net.blob_at(b)).collect();
        let tops: Vec<&crema::Blob> = l.top.iter().map(|&t| net.blob_at(t)).collect();
        let flops = l.layer.forward_flops(&bottoms, &tops);
        let gflops = flops.filter(|_| fms > 0.0).map(|f| f / (fms * 1e-3) / 1e9);
        rows.push((l.name.clone(), l.ty.clone(), fms, bms, gflops));
    }
    let (fms, bms, cms) = (fwd / n * 1e3, bwd / n * 1e3, comm / n * 1e3);
    let ranks = cluster.as_ref().map(|c| c.size());
    if !root {
        return Ok(ExitCode::SUCCESS);
    }
    if a.json {
        let layers: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, ty, f, b, g)| {
                let mut o = serde_json::json!({
                    "name": name, "type": ty, "forward_ms": f, "backward_ms": b,
                });
                if let Some(g) = g {
                    o["gflops"] = serde_json::json!(g);
                }
                o
            })
            .collect();
        let mut o = serde_json::json!({
            "iterations": a.iterations,
            "forward_ms": fms,
            "backward_ms": bms,
            "total_ms": fms + bms,
            "layers": layers,
        });
        if let Some(k) = ranks {
            o["mpi_ranks"] = serde_json::json!(k);
            o["allreduce_ms"] = serde_json::json!(cms);
        }
        println!("{o}");
    } else {
        eprintln!("average time per layer ({} iterations):", a.iterations);
        for (name, _ty, f, b, g) in &rows {
            let g = g.map(|g| format!("  {g:7.1} GFLOP/s")).unwrap_or_default();
            eprintln!("{name:>16}\tforward: {f:9.3} ms.\tbackward: {b:9.3} ms.{g}");
        }
        eprintln!("Average Forward pass: {fms:.3} ms.");
        eprintln!("Average Backward pass: {bms:.3} ms.");
        eprintln!("Average Forward-Backward: {:.3} ms.", fms + bms);
        if let Some(k) = ranks {
            eprintln!("Average Allreduce of the gradients ({k} MPI ranks): {cms:.3} ms.");
        }
        eprintln!("Total Time: {:.3} ms.", total * 1e3);
    }
    Ok(ExitCode::SUCCESS)
}
