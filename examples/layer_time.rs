//! Times one layer's forward and backward on a given bottom shape (min over runs, so a loaded
//! machine still gives a usable figure): `cargo run --release --example layer_time -- YAML N,C,H,W [RUNS]`.

use crema::testing::Harness;
use crema::Blob;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let yaml = args.next().ok_or("give the layer's YAML")?;
    let shape: Vec<usize> = args
        .next()
        .ok_or("give the bottom shape N,C,H,W")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let n: usize = shape.iter().product();
    let x = (0..n)
        .map(|i| ((i * 7919) % 1013) as f32 / 500.0 - 1.0)
        .collect();
    let mut h = Harness::new(&yaml, vec![Blob::from_data(&shape, x)?])?;
    h.forward()?;
    let m = h.top[0].count();
    h.top[0].diff = (0..m).map(|i| ((i * 31) % 17) as f32 / 17.0).collect();
    let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
    for _ in 0..runs {
        let t = Instant::now();
        h.forward()?;
        fwd = fwd.min(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        h.backward(&[true])?;
        bwd = bwd.min(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("forward {fwd:.3} ms, backward {bwd:.3} ms (min of {runs})");
    Ok(())
}
