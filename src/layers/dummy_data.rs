//! `DummyData`: tops filled by fillers (constant by default); legacy num/channels/height/width.

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{filler, Blob, Error, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `DummyData` layer. Constant fillers are applied once; other fillers refill every forward.
pub struct DummyData {
    shapes: Vec<Vec<usize>>,
    fillers: Vec<FillerParameter>,
    rng: StdRng,
    filled: bool,
}

/// Creates `DummyData` from `dummy_data_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p.dummy_data_param.clone().unwrap_or_default();
    let tops = p.top.len();
    let shapes: Vec<Vec<usize>> = if !d.shape.is_empty() {
        d.shape
            .iter()
            .map(|s| s.dim.iter().map(|&x| x.max(0) as usize).collect())
            .collect()
    } else {
        let n = d
            .num
            .len()
            .max(d.channels.len())
            .max(d.height.len())
            .max(d.width.len());
        let pick = |v: &Vec<u32>, i: usize| -> usize {
            if v.len() == 1 {
                v[0] as usize
            } else {
                v.get(i).copied().unwrap_or(1) as usize
            }
        };
        (0..n)
            .map(|i| {
                vec![
                    pick(&d.num, i),
                    pick(&d.channels, i),
                    pick(&d.height, i),
                    pick(&d.width, i),
                ]
            })
            .collect()
    };
    if shapes.len() != 1 && shapes.len() != tops {
        return Err(Error::config(format!(
            "dummy_data_param gives {} shape(s) for {tops} top(s); give one per top or one for all",
            shapes.len()
        )));
    }
    let fillers = match d.data_filler.len() {
        0 => vec![filler::constant(0.0)],
        1 => d.data_filler.clone(),
        n if n == tops => d.data_filler.clone(),
        n => {
            return Err(Error::config(format!(
                "dummy_data_param gives {n} data_filler(s) for {tops} top(s)"
            )))
        }
    };
    Ok(Box::new(DummyData {
        shapes,
        fillers,
        rng: StdRng::seed_from_u64(0),
        filled: false,
    }))
}

impl DummyData {
    fn pick<T>(v: &[T], i: usize) -> &T {
        if v.len() == 1 {
            &v[0]
        } else {
            &v[i]
        }
    }
}

impl Layer for DummyData {
    fn type_name(&self) -> &'static str {
        "DummyData"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(0),
            min_top: Some(1),
            ..Default::default()
        }
    }
    fn setup(&mut self, _: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.rng = StdRng::seed_from_u64(rand::Rng::gen(ctx.rng));
        Ok(Vec::new())
    }
    fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }
    fn reshape(&mut self, _: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        for (i, t) in top.iter_mut().enumerate() {
            let s = Self::pick(&self.shapes, i).clone();
            t.reshape(&s);
        }
        Ok(())
    }
    fn forward(&mut self, _: &[&Blob], top: &mut [&mut Blob], _: &mut [&mut Blob]) -> Result<()> {
        for (i, t) in top.iter_mut().enumerate() {
            let f = Self::pick(&self.fillers, i).clone();
            if f.r#type() != "constant" || !self.filled {
                filler::fill(&f, t, &mut self.rng)?;
            }
        }
        self.filled = self.fillers.iter().all(|f| f.r#type() == "constant");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{layer_from_yaml, run_forward};

    #[test]
    fn constant_and_legacy_shapes() {
        let mut l = layer_from_yaml(
            "type: DummyData\ntop: [a, b]\ndummy_data_param: { num: 2, channels: [3, 1], height: 4, width: 5, data_filler: { type: constant, value: 7 } }",
        );
        let t = run_forward(&mut *l, &[]);
        assert_eq!(t.len(), 1); // run_forward makes min_top tops
        assert_eq!(t[0].shape, vec![2, 3, 4, 5]);
        assert!(t[0].data.iter().all(|&v| v == 7.0));
    }

    #[test]
    fn gaussian_filler_refills() {
        let mut l = layer_from_yaml(
            "type: DummyData\ntop: x\ndummy_data_param: { shape: { dim: [1000] }, data_filler: { type: gaussian, std: 2 } }",
        );
        let t = run_forward(&mut *l, &[]);
        let var = t[0].data.iter().map(|v| v * v).sum::<f32>() / 1000.0;
        assert!((var - 4.0).abs() < 0.6, "{var}");
    }
}
