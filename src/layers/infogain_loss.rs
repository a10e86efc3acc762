//! `InfogainLoss` (Caffe 1.0): softmax over `infogain_loss_param.axis` (default 1) of the scores,
//! then `-sum_k H[l, k] log(max(p_k, 1e-20))` for each non-ignored label `l`, divided by Caffe's
//! normaliser (`loss_param`, as `SoftmaxWithLoss`). `H` is `K x K` (`K` classes), read from
//! `infogain_loss_param.source` (a BlobProto `.binaryproto`) or given as a third bottom (which
//! gets no gradient). Gradient wrt the scores: `p_k sum_j H[l, j] - H[l, k]`, scaled the same.
//! An optional second top holds the probabilities. With `H` the identity this is
//! `SoftmaxWithLoss`.

use super::multinomial_logistic_loss::LOG_THRESHOLD;
use super::softmax::{softmax, split_axis};
use super::softmax_loss::{check_label, class_bound, normalization_mode, normalizer};
use super::{BlobCounts, Layer};
use crate::proto::loss_parameter::NormalizationMode;
use crate::proto::LayerParameter;
use crate::{Blob, Error, Result};

/// `InfogainLoss` layer.
pub struct InfogainLoss {
    axis: i32,
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// `H` from `source`, when not a bottom.
    infogain: Option<Blob>,
    source: String,
    prob: Blob,
}

/// Creates `InfogainLoss`; reads `infogain_loss_param.source` when set.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let ip = p.infogain_loss_param.clone().unwrap_or_default();
    let source = ip.source().to_string();
    let infogain = if source.is_empty() {
        None
    } else {
        Some(crate::caffe::binaryproto::read_blob_proto(&source)?)
    };
    Ok(Box::new(InfogainLoss {
        axis: ip.axis(),
        ignore_label: p.loss_param.as_ref().and_then(|l| l.ignore_label),
        normalization: normalization_mode(p),
        infogain,
        source,
        prob: Blob::default(),
    }))
}

impl InfogainLoss {
    /// `H` as a flat `K x K` matrix: the third bottom, or the matrix read from `source`.
    fn matrix<'a>(&'a self, bottom: &'a [&Blob]) -> Result<&'a [f32]> {
        match (bottom.get(2), &self.infogain) {
            (Some(b), _) => Ok(&b.data),
            (None, Some(h)) => Ok(&h.data),
            (None, None) => Err(Error::config(
                "InfogainLoss needs the infogain matrix H: set infogain_loss_param.source to a \
                 .binaryproto file or give it as a third bottom",
            )),
        }
    }

    /// Runs `f(outer, inner, k, label)` for every non-ignored label; returns the count.
    fn each_label(
        &self,
        bottom: &[&Blob],
        mut f: impl FnMut(usize, usize, usize, usize),
    ) -> Result<usize> {
        let (outer, c, inner) = split_axis(bottom[0], self.axis)?;
        let mut valid = 0;
        for o in 0..outer {
            for i in 0..inner {
                if let Some(l) = check_label(bottom[1].data[o * inner + i], c, self.ignore_label)? {
                    f(o, i, c, l);
                    valid += 1;
                }
            }
        }
        Ok(valid)
    }
}

impl Layer for InfogainLoss {
    fn type_name(&self) -> &'static str {
        "InfogainLoss"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            min_bottom: Some(2),
            max_bottom: Some(3),
            min_top: Some(1),
            max_top: Some(2),
            ..Default::default()
        }
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom == 0
    }
    fn index_bound(&self, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
        class_bound(self.axis, bottom, shapes)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (outer, k, inner) = split_axis(bottom[0], self.axis)?;
        crate::ensure!(
            outer * inner == bottom[1].count(),
            "the number of labels must match the number of predictions: prediction shape {} \
             (axis {}) needs {} labels, label shape is {}",
            bottom[0].shape_string(),
            self.axis,
            outer * inner,
            bottom[1].shape_string()
        );
        let h = self.matrix(bottom)?.len();
        crate::ensure!(
            h == k * k,
            "the infogain matrix H{} must be {k}x{k} for {k} classes, it holds {h} values",
            if bottom.len() > 2 {
                " (third bottom)".to_string()
            } else {
                format!(" from {}", self.source)
            }
        );
        top[0].reshape(&[]);
        self.prob.reshape(&bottom[0].shape);
        if top.len() > 1 {
            top[1].reshape(&bottom[0].shape);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (outer, c, inner) = split_axis(bottom[0], self.axis)?;
        softmax(&bottom[0].data, &mut self.prob.data, outer, c, inner);
        let h = self.matrix(bottom)?;
        let prob = &self.prob.data;
        let mut loss = 0.0f64;
        let valid = self.each_label(bottom, |o, i, c, l| {
            for k in 0..c {
                let p = prob[o * c * inner + k * inner + i].max(LOG_THRESHOLD);
                loss -= h[l * c + k] as f64 * (p as f64).ln();
            }
        })?;
        top[0].data[0] = (loss / normalizer(self.normalization, outer, inner, valid) as f64) as f32;
        if top.len() > 1 {
            top[1].data.copy_from_slice(&self.prob.data);
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
        crate::ensure!(
            !down.get(2).copied().unwrap_or(false),
            "InfogainLoss cannot backpropagate to the infogain matrix input"
        );
        if !down[0] {
            return Ok(());
        }
        let (outer, _, inner) = split_axis(bottom[0], self.axis)?;
        let (grad, valid) = {
            let refs: Vec<&Blob> = bottom.iter().map(|b| &**b).collect();
            let h = self.matrix(&refs)?;
            let prob = &self.prob.data;
            let mut grad = vec![0.0f32; prob.len()];
            let valid = self.each_label(&refs, |o, i, c, l| {
                let row = &h[l * c..(l + 1) * c];
                let sum: f32 = row.iter().sum();
                for (k, &hk) in row.iter().enumerate() {
                    let at = o * c * inner + k * inner + i;
                    grad[at] = prob[at] * sum - hk;
                }
            })?;
            (grad, valid)
        };
        let scale = top[0].diff[0] / normalizer(self.normalization, outer, inner, valid);
        crate::math::axpy(scale, &grad, &mut bottom[0].diff);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{
        assert_close, check_layer_from, err_text, layer_param_from_yaml, Harness,
    };
    use crate::Blob;

    /// f64 reference: softmax, then the H-weighted negative log, divided by `valid`.
    fn reference(x: &[f64], labels: &[usize], h: &[f64], c: usize) -> f64 {
        let mut loss = 0.0;
        for (n, &l) in labels.iter().enumerate() {
            let row = &x[n * c..(n + 1) * c];
            let z: f64 = row.iter().map(|v| v.exp()).sum();
            for k in 0..c {
                loss -= h[l * c + k] * (row[k].exp() / z).ln();
            }
        }
        loss / labels.len() as f64
    }

    #[test]
    fn forward_against_f64_reference_from_file_and_bottom() {
        let x = [0.5f32, -1.0, 2.0, 0.0, 1.0, 3.0];
        let h = [1.0f32, 0.5, 0.0, 0.2, 1.0, 0.1, 0.0, 0.3, 2.0];
        let want = reference(&x.map(f64::from), &[2, 0], &h.map(f64::from), 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.binaryproto");
        let hb = Blob::from_data(&[1, 1, 3, 3], h.to_vec()).unwrap();
        crate::caffe::binaryproto::write_blob_proto(&path, &hb).unwrap();
        let bottoms = || {
            vec![
                Blob::from_data(&[2, 3], x.to_vec()).unwrap(),
                Blob::from_data(&[2], vec![2.0, 0.0]).unwrap(),
            ]
        };
        let yaml = format!(
            "type: InfogainLoss\ninfogain_loss_param: {{ source: '{}' }}",
            path.display()
        );
        let mut from_file = Harness::new(&yaml, bottoms()).unwrap();
        from_file.forward().unwrap();
        assert_close(&from_file.top[0].data, &[want as f32], 1e-5);
        let mut b = bottoms();
        b.push(hb);
        let mut from_bottom = Harness::new("type: InfogainLoss", b).unwrap();
        from_bottom.forward().unwrap();
        assert_close(&from_bottom.top[0].data, &[want as f32], 1e-5);
        // Identity H is SoftmaxWithLoss.
        let mut b = bottoms();
        b.push(Blob::from_data(&[3, 3], vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]).unwrap());
        let mut ident = Harness::new("type: InfogainLoss", b).unwrap();
        let mut soft = Harness::new("type: SoftmaxWithLoss", bottoms()).unwrap();
        ident.forward().unwrap();
        soft.forward().unwrap();
        assert_close(&ident.top[0].data, &soft.top[0].data, 1e-6);
    }

    #[test]
    fn gradients_with_ignore_label_and_spatial_axis() {
        check_layer_from("type: InfogainLoss", &[&[4, 3], &[4], &[3, 3]]);
        check_layer_from(
            "type: InfogainLoss\nloss_param: { ignore_label: 1, normalization: FULL }",
            &[&[2, 3, 2], &[2, 2], &[3, 3]],
        );
    }

    #[test]
    fn missing_or_wrong_matrix_is_an_error() {
        let b = || {
            vec![
                Blob::from_data(&[1, 3], vec![0.0; 3]).unwrap(),
                Blob::from_data(&[1], vec![0.0]).unwrap(),
            ]
        };
        assert!(err_text(Harness::new("type: InfogainLoss", b())).contains("source"));
        let mut with_bad = b();
        with_bad.push(Blob::new(&[2, 2]));
        assert!(err_text(Harness::new("type: InfogainLoss", with_bad)).contains("3x3"));
        let p = layer_param_from_yaml(
            "type: InfogainLoss\ninfogain_loss_param: { source: /nonexistent/h.binaryproto }",
        )
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("/nonexistent/h.binaryproto"));
    }
}
