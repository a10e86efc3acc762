//! Top-1 class of grey PNG images with a trained LeNet, through the library (a stand-in for
//! `crema classify` in scripts/main-job.sh).
//!
//! `cargo run --release --example lenet_top1 -- DEPLOY.yaml WEIGHTS.caffemodel LABELS.txt IMG.png...`
//! Pixels are scaled by 0.00390625 as in training.

use crema::data::image_list::{read_image, Decode};
use crema::proto::Phase;
use rand::SeedableRng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        anyhow::bail!("usage: lenet_top1 DEPLOY.yaml WEIGHTS.caffemodel LABELS.txt IMAGE.png...");
    }
    let param = crema::spec::load_net(&args[0])?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut rng)?;
    let trained = crema::weights::load_caffemodel(&args[1])?;
    net.copy_trained_layers_from(&trained, &args[1])?;
    let labels: Vec<String> = std::fs::read_to_string(&args[2])?
        .lines()
        .map(str::to_string)
        .collect();
    let input = net.input_names()[0].to_string();
    let shape = net
        .blob(&input)
        .map(|b| b.shape.clone())
        .ok_or_else(|| anyhow::anyhow!("no input blob"))?;
    let (h, w) = (shape[2], shape[3]);
    let mut correct = 0;
    for img in &args[3..] {
        let s = read_image(
            img,
            Decode {
                color: Some(false),
                resize: Some((h, w)),
            },
        )?;
        let b = net
            .blob_mut(&input)
            .ok_or_else(|| anyhow::anyhow!("no input blob"))?;
        b.reshape(&[1, 1, h, w]);
        for (d, v) in b.data.iter_mut().zip(&s.data) {
            *d = v * 0.00390625;
        }
        net.forward()?;
        let out = net.output_names()[0].to_string();
        let p = &net
            .blob(&out)
            .ok_or_else(|| anyhow::anyhow!("no output"))?
            .data;
        let (best, prob) =
            p.iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        let name = labels.get(best).map(String::as_str).unwrap_or("?");
        // File names from `crema convert --idx-to-png` carry the true label: 00012_label7.png.
        let truth = img
            .rsplit_once("_label")
            .and_then(|(_, r)| r.trim_end_matches(".png").parse::<usize>().ok());
        if truth == Some(best) {
            correct += 1;
        }
        println!(
            "{img}: {name} (class {best}, p = {prob:.4}){}",
            truth
                .map(|t| format!(
                    ", true: {}",
                    labels.get(t).map(String::as_str).unwrap_or("?")
                ))
                .unwrap_or_default()
        );
    }
    println!("{correct}/{} correct", args.len() - 3);
    Ok(())
}
