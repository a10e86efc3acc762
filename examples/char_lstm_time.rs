//! Times forward + backward of the char model (models/char_lstm/net.yaml: T = 50, N = 32,
//! two LSTMs of 256) layer by layer, the way `crema time` does.
//!
//! `cargo run --release --example char_lstm_time [-- MODEL [ITERATIONS]]`

use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| "models/char_lstm/net.yaml".into());
    let iters: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let param = crema::spec::load_net(&model)?;
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = crema::Net::for_phase(&param, Phase::Train, &mut rng)?;
    // Warm up (allocations, BLAS threads).
    for _ in 0..3 {
        net.forward_backward()?;
    }
    net.reset_timers();
    let t0 = Instant::now();
    for _ in 0..iters {
        net.clear_param_diffs();
        net.forward_backward()?;
    }
    let total = t0.elapsed().as_secs_f64() * 1e3 / iters as f64;
    println!(
        "{:<10} {:<16} {:>10} {:>10}",
        "layer", "type", "fwd ms", "bwd ms"
    );
    let (mut f, mut b) = (0.0, 0.0);
    for l in net.layers() {
        let (lf, lb) = (
            l.forward_time * 1e3 / iters as f64,
            l.backward_time * 1e3 / iters as f64,
        );
        f += lf;
        b += lb;
        println!("{:<10} {:<16} {:>10.2} {:>10.2}", l.name, l.ty, lf, lb);
    }
    println!("{:<27} {f:>10.2} {b:>10.2}", "sum of layers");
    println!("one training iteration (forward + backward): {total:.1} ms over {iters} iterations");
    Ok(())
}
