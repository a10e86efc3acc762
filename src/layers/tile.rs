//! `Tile`: repeats bottom 0 `tiles` times along `axis`.

use super::runs::{add_runs, copy_runs, Runs};
use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Tile` layer.
pub struct Tile {
    axis: i32,
    tiles: usize,
}

/// Creates `Tile` from `tile_param` (`tiles` is required and positive).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let t = p.tile_param.unwrap_or_default();
    crate::ensure!(
        t.tiles.is_some_and(|n| n > 0),
        "tile_param.tiles must be set and positive"
    );
    Ok(Box::new(Tile {
        axis: t.axis(),
        tiles: t.tiles() as usize,
    }))
}

impl Tile {
    /// `(outer, inner)`: runs before the axis and values per run.
    fn geometry(&self, x: &Blob) -> Result<(usize, usize)> {
        let a = x.canonical_axis(self.axis)?;
        Ok((x.count_range(0, a), x.count_from(a)))
    }
}

impl Layer for Tile {
    fn type_name(&self) -> &'static str {
        "Tile"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let a = bottom[0].canonical_axis(self.axis)?;
        let mut shape = bottom[0].shape.clone();
        shape[a] *= self.tiles;
        top[0].reshape(&shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (outer, inner) = self.geometry(bottom[0])?;
        for t in 0..self.tiles {
            let to = Runs::at(self.tiles * inner, t * inner);
            copy_runs(
                outer,
                inner,
                &bottom[0].data,
                Runs::packed(inner),
                &mut top[0].data,
                to,
            );
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if !down[0] {
            return Ok(());
        }
        let (outer, inner) = self.geometry(bottom[0])?;
        for t in 0..self.tiles {
            let from = Runs::at(self.tiles * inner, t * inner);
            add_runs(
                outer,
                inner,
                &top[0].diff,
                from,
                &mut bottom[0].diff,
                Runs::packed(inner),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_from_yaml, run_forward};

    #[test]
    fn forward_hand_values() {
        let mut l = layer_from_yaml("type: Tile\ntile_param: { tiles: 2 }");
        let y = run_forward(&mut *l, &[(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]);
        assert_eq!(y[0].shape, vec![2, 4]);
        assert_eq!(y[0].data, vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
        let mut l = layer_from_yaml("type: Tile\ntile_param: { axis: 0, tiles: 3 }");
        let y = run_forward(&mut *l, &[(&[1, 2], &[1.0, 2.0])]);
        assert_eq!(y[0].shape, vec![3, 2]);
        assert_eq!(y[0].data, vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let e = err_text(crate::layers::create(
            &crate::testing::layer_param_from_yaml("type: Tile").unwrap(),
        ));
        assert!(e.contains("tiles must be set"), "{e}");
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Tile\ntile_param: { axis: 1, tiles: 3 }",
            &[&[2, 2, 3]],
        );
        check_layer_from("type: Tile\ntile_param: { axis: -1, tiles: 2 }", &[&[2, 3]]);
    }
}
