//! Weight initialisers (`FillerParameter.type`): constant, uniform, gaussian (with `sparse`),
//! positive_unitball, xavier, msra (with `variance_norm`), bilinear. All draw from a seeded RNG.

use crate::proto::{filler_parameter::VarianceNorm, FillerParameter};
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// The filler types crema knows.
pub const FILLER_TYPES: &[&str] = &[
    "constant",
    "uniform",
    "gaussian",
    "positive_unitball",
    "xavier",
    "msra",
    "bilinear",
];

/// A constant filler with the given value (what Caffe uses when a `*_filler` is absent).
pub fn constant(value: f32) -> FillerParameter {
    FillerParameter {
        r#type: Some("constant".into()),
        value: Some(value),
        ..Default::default()
    }
}

fn fan(blob: &Blob, norm: VarianceNorm) -> f32 {
    let count = blob.count().max(1);
    let fan_in = count / blob.shape.first().copied().unwrap_or(1).max(1);
    let fan_out = if blob.shape.len() > 1 {
        count / blob.shape[1].max(1)
    } else {
        count
    };
    match norm {
        VarianceNorm::FanIn => fan_in as f32,
        VarianceNorm::FanOut => fan_out as f32,
        VarianceNorm::Average => (fan_in + fan_out) as f32 / 2.0,
    }
}

fn gaussian(data: &mut [f32], mean: f32, std: f32, rng: &mut StdRng) -> Result<()> {
    let dist = Normal::new(mean, std)
        .map_err(|e| Error::config(format!("gaussian filler: bad std {std}: {e}")))?;
    data.iter_mut().for_each(|v| *v = dist.sample(rng));
    Ok(())
}

/// Fills `blob.data` as the filler says.
pub fn fill(param: &FillerParameter, blob: &mut Blob, rng: &mut StdRng) -> Result<()> {
    let ty = param.r#type();
    match ty {
        "constant" => blob.data.iter_mut().for_each(|v| *v = param.value()),
        "uniform" => {
            let (lo, hi) = (param.min(), param.max());
            if lo > hi {
                return Err(Error::config(format!(
                    "uniform filler: min {lo} is greater than max {hi}"
                )));
            }
            blob.data
                .iter_mut()
                .for_each(|v| *v = if lo == hi { lo } else { rng.gen_range(lo..hi) });
        }
        "gaussian" => {
            gaussian(&mut blob.data, param.mean(), param.std(), rng)?;
            let sparse = param.sparse();
            if sparse >= 0 {
                let outputs = blob.shape.first().copied().unwrap_or(1).max(1) as f32;
                let keep = (sparse as f32 / outputs).min(1.0);
                blob.data.iter_mut().for_each(|v| {
                    if rng.gen::<f32>() >= keep {
                        *v = 0.0
                    }
                });
            }
        }
        "positive_unitball" => {
            let rows = blob.shape.first().copied().unwrap_or(1).max(1);
            let dim = blob.count() / rows;
            blob.data.iter_mut().for_each(|v| *v = rng.gen::<f32>());
            for row in blob.data.chunks_mut(dim.max(1)) {
                let s: f32 = row.iter().sum();
                if s > 0.0 {
                    row.iter_mut().for_each(|v| *v /= s);
                }
            }
        }
        "xavier" => {
            let n = fan(blob, param.variance_norm());
            let scale = (3.0 / n).sqrt();
            blob.data
                .iter_mut()
                .for_each(|v| *v = rng.gen_range(-scale..scale));
        }
        "msra" => {
            let n = fan(blob, param.variance_norm());
            gaussian(&mut blob.data, 0.0, (2.0 / n).sqrt(), rng)?;
        }
        "bilinear" => {
            if blob.shape.len() != 4 || blob.shape[2] != blob.shape[3] {
                return Err(Error::config(format!(
                    "bilinear filler needs a 4-D blob with square kernels, got {}",
                    blob.shape_string()
                )));
            }
            let (h, w) = (blob.shape[2], blob.shape[3]);
            let f = (w as f32 / 2.0).ceil();
            let c = (2.0 * f - 1.0 - f % 2.0) / (2.0 * f);
            for (i, v) in blob.data.iter_mut().enumerate() {
                let x = (i % w) as f32;
                let y = ((i / w) % h) as f32;
                *v = (1.0 - (x / f - c).abs()) * (1.0 - (y / f - c).abs());
            }
        }
        other => {
            let near = crate::spec::nearest(other, FILLER_TYPES.iter().copied());
            return Err(Error::config(format!(
                "unknown filler type `{other}`{}; known fillers: {}",
                near.map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default(),
                FILLER_TYPES.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn filler(ty: &str) -> FillerParameter {
        FillerParameter {
            r#type: Some(ty.into()),
            ..Default::default()
        }
    }

    #[test]
    fn constant_and_uniform() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Blob::new(&[2, 3]);
        fill(&constant(0.5), &mut b, &mut rng).unwrap();
        assert!(b.data.iter().all(|&v| v == 0.5));
        let mut p = filler("uniform");
        p.min = Some(-2.0);
        p.max = Some(-1.0);
        fill(&p, &mut b, &mut rng).unwrap();
        assert!(b.data.iter().all(|&v| (-2.0..-1.0).contains(&v)));
    }

    #[test]
    fn xavier_range_and_msra_std() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut b = Blob::new(&[50, 20, 3, 3]);
        fill(&filler("xavier"), &mut b, &mut rng).unwrap();
        let a = (3.0f32 / 180.0).sqrt();
        assert!(b.data.iter().all(|v| v.abs() <= a));
        fill(&filler("msra"), &mut b, &mut rng).unwrap();
        let var: f32 = b.data.iter().map(|v| v * v).sum::<f32>() / b.count() as f32;
        assert!((var - 2.0 / 180.0).abs() < 0.002, "{var}");
    }

    #[test]
    fn gaussian_sparse_and_unitball() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = Blob::new(&[10, 1000]);
        let mut p = filler("gaussian");
        p.sparse = Some(3);
        fill(&p, &mut b, &mut rng).unwrap();
        let nz = b.data.iter().filter(|v| **v != 0.0).count() as f32 / b.count() as f32;
        assert!((nz - 0.3).abs() < 0.03, "{nz}");
        fill(&filler("positive_unitball"), &mut b, &mut rng).unwrap();
        for row in b.data.chunks(1000) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn bilinear_kernel_is_caffes() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut b = Blob::new(&[1, 1, 4, 4]);
        fill(&filler("bilinear"), &mut b, &mut rng).unwrap();
        // f = 2, c = 0.75: weights along one axis are 0.25, 0.75, 0.75, 0.25.
        let w = [0.25, 0.75, 0.75, 0.25];
        for y in 0..4 {
            for x in 0..4 {
                assert!((b.data[y * 4 + x] - w[y] * w[x]).abs() < 1e-6);
            }
        }
        assert!(fill(&filler("xavierr"), &mut b, &mut rng)
            .unwrap_err()
            .to_string()
            .contains("did you mean `xavier`"));
    }
}
