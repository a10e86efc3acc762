//! Caffe's upgrade rules (`upgrade_proto.cpp`, section 4.6 of `CAFFE_REFERENCE.md`): V1 `layers`
//! become `layer`s with string types and `ParamSpec`s, legacy data-transform fields move into
//! `transform_param`, `input`/`input_dim`/`input_shape` become an `Input` layer, old BatchNorm
//! `param`s are frozen, and the solver's `solver_type` enum becomes `type`. V0 nets (pre-2014)
//! first become V1 (`upgrade_v0`).

use crate::proto::{
    param_spec, v1_layer_parameter::LayerType, LayerParameter, NetParameter, ParamSpec,
    SolverParameter, TransformationParameter, V1LayerParameter,
};
use crate::spec::{descriptor, to_dynamic};
use crate::{Error, Result};
use prost_reflect::{DynamicMessage, ReflectMessage};

/// The current type string of a V1 `LayerType`.
pub fn v1_type_name(t: LayerType) -> &'static str {
    use LayerType::*;
    match t {
        None => "",
        Absval => "AbsVal",
        Accuracy => "Accuracy",
        Argmax => "ArgMax",
        Bnll => "BNLL",
        Concat => "Concat",
        ContrastiveLoss => "ContrastiveLoss",
        Convolution => "Convolution",
        Data => "Data",
        Deconvolution => "Deconvolution",
        Dropout => "Dropout",
        DummyData => "DummyData",
        EuclideanLoss => "EuclideanLoss",
        Eltwise => "Eltwise",
        Exp => "Exp",
        Flatten => "Flatten",
        Hdf5Data => "HDF5Data",
        Hdf5Output => "HDF5Output",
        HingeLoss => "HingeLoss",
        Im2col => "Im2col",
        ImageData => "ImageData",
        InfogainLoss => "InfogainLoss",
        InnerProduct => "InnerProduct",
        Lrn => "LRN",
        MemoryData => "MemoryData",
        MultinomialLogisticLoss => "MultinomialLogisticLoss",
        Mvn => "MVN",
        Pooling => "Pooling",
        Power => "Power",
        Relu => "ReLU",
        Sigmoid => "Sigmoid",
        SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        Silence => "Silence",
        Softmax => "Softmax",
        SoftmaxLoss => "SoftmaxWithLoss",
        Split => "Split",
        Slice => "Slice",
        Tanh => "TanH",
        WindowData => "WindowData",
        Threshold => "Threshold",
    }
}

/// Applies every net upgrade in Caffe's order. The result uses only `layer`.
pub fn upgrade_net(net: &mut NetParameter) -> Result<()> {
    if !net.layers.is_empty() && !net.layer.is_empty() {
        return Err(Error::Invalid(
            "the net has both `layer` (current format) and `layers` (V1); Caffe refuses such \
             nets, keep one"
                .into(),
        ));
    }
    if !net.layers.is_empty() {
        let mut v1 = std::mem::take(&mut net.layers);
        super::upgrade_v0::upgrade_v0_layers(&mut v1)?;
        let mut out = Vec::with_capacity(v1.len());
        for (i, mut l) in v1.into_iter().enumerate() {
            upgrade_v1_data_transform(&mut l);
            out.push(v1_to_v2(l, i)?);
        }
        net.layer = out;
    }
    crate::spec::upgrade_inputs(net)?;
    upgrade_batch_norm(net);
    Ok(())
}

/// Moves `scale`/`mean_file`/`crop_size`/`mirror` of the V1 data layers' params into
/// `transform_param` (Caffe's `UpgradeNetDataTransformation`).
fn upgrade_v1_data_transform(l: &mut V1LayerParameter) {
    macro_rules! move_fields {
        ($p:expr) => {
            if let Some(p) = $p.as_mut() {
                if p.scale.is_some()
                    || p.mean_file.is_some()
                    || p.crop_size.is_some()
                    || p.mirror.is_some()
                {
                    let t = l
                        .transform_param
                        .get_or_insert_with(TransformationParameter::default);
                    if let Some(v) = p.scale.take() {
                        t.scale = Some(v);
                    }
                    if let Some(v) = p.mean_file.take() {
                        t.mean_file = Some(v);
                    }
                    if let Some(v) = p.crop_size.take() {
                        t.crop_size = Some(v);
                    }
                    if let Some(v) = p.mirror.take() {
                        t.mirror = Some(v);
                    }
                }
            }
        };
    }
    move_fields!(l.data_param);
    move_fields!(l.image_data_param);
    move_fields!(l.window_data_param);
}

/// One V1 layer as a current `LayerParameter`. Every field with the same name in both messages
/// (bottom, top, name, include, exclude, loss_weight and all `*_param`s) is copied through the
/// descriptors, so no parameter message can be forgotten; blobs move without a copy.
fn v1_to_v2(mut v1: V1LayerParameter, index: usize) -> Result<LayerParameter> {
    let blobs = std::mem::take(&mut v1.blobs);
    let src = to_dynamic(&v1);
    let mut dst = DynamicMessage::new(descriptor::<LayerParameter>());
    for (field, value) in src.fields() {
        match field.name() {
            "type" | "param" | "blob_share_mode" | "blobs_lr" | "weight_decay" | "layer" => {}
            name => {
                let Some(f) = dst.descriptor().get_field_by_name(name) else {
                    return Err(Error::Invalid(format!(
                        "V1 layer #{index} (`{}`): field `{name}` has no counterpart in \
                         LayerParameter",
                        v1.name()
                    )));
                };
                dst.try_set_field(&f, value.clone()).map_err(|e| {
                    Error::Invalid(format!(
                        "V1 layer #{index} (`{}`): cannot copy `{name}`: {e}",
                        v1.name()
                    ))
                })?;
            }
        }
    }
    let mut out: LayerParameter = dst
        .transcode_to()
        .map_err(|e| Error::Invalid(format!("V1 layer #{index}: transcode failed: {e}")))?;
    if v1.r#type.is_some() {
        let t = LayerType::try_from(v1.r#type.unwrap_or(0)).map_err(|_| {
            Error::Invalid(format!(
                "V1 layer #{index} (`{}`): unknown V1 layer type number {}",
                v1.name(),
                v1.r#type.unwrap_or(0)
            ))
        })?;
        out.r#type = Some(v1_type_name(t).to_string());
    }
    let n = v1
        .param
        .len()
        .max(v1.blob_share_mode.len())
        .max(v1.blobs_lr.len())
        .max(v1.weight_decay.len());
    for i in 0..n {
        let mut p = ParamSpec::default();
        if let Some(name) = v1.param.get(i) {
            p.name = Some(name.clone());
        }
        if let Some(&m) = v1.blob_share_mode.get(i) {
            p.share_mode = Some(if m == 1 {
                param_spec::DimCheckMode::Permissive as i32
            } else {
                param_spec::DimCheckMode::Strict as i32
            });
        }
        if let Some(&lr) = v1.blobs_lr.get(i) {
            p.lr_mult = Some(lr);
        }
        if let Some(&wd) = v1.weight_decay.get(i) {
            p.decay_mult = Some(wd);
        }
        out.param.push(p);
    }
    out.blobs = blobs;
    Ok(out)
}

/// Old BatchNorm definitions declared three `param`s; they become lr_mult 0 / decay_mult 0.
fn upgrade_batch_norm(net: &mut NetParameter) {
    for l in net.layer.iter_mut() {
        if l.r#type() == "BatchNorm" && l.param.len() == 3 {
            for p in l.param.iter_mut() {
                p.lr_mult = Some(0.0);
                p.decay_mult = Some(0.0);
            }
        }
    }
}

/// Upgrades a solver: `solver_type` -> `type`, and the nets embedded in it.
pub fn upgrade_solver(s: &mut SolverParameter) -> Result<()> {
    crate::spec::upgrade_solver_type(s)?;
    for n in crate::spec::embedded_nets(s) {
        upgrade_net(n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caffe::prototxt;

    #[test]
    fn v1_layers_become_current_layers() {
        let text = r#"
name: "v1"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layers {
  name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  param: "w" blob_share_mode: PERMISSIVE
  convolution_param { num_output: 4 kernel_size: 3 }
}
layers { name: "d" type: DATA top: "x"
  data_param { source: "s" scale: 0.5 mirror: true crop_size: 4 batch_size: 2 } }
layers { name: "l" type: SOFTMAX_LOSS bottom: "conv" bottom: "x" top: "loss" loss_weight: 2
  include { phase: TRAIN } }
"#;
        let mut net: NetParameter = prototxt::parse(text, "t").unwrap();
        upgrade_net(&mut net).unwrap();
        assert!(net.layers.is_empty() && net.input.is_empty() && net.input_dim.is_empty());
        let types: Vec<&str> = net.layer.iter().map(|l| l.r#type()).collect();
        assert_eq!(types, ["Input", "Convolution", "Data", "SoftmaxWithLoss"]);
        assert_eq!(
            net.layer[0].input_param.as_ref().unwrap().shape[0].dim,
            [1, 3, 8, 8]
        );
        let c = &net.layer[1];
        assert_eq!(c.param.len(), 2);
        assert_eq!(c.param[0].name(), "w");
        assert_eq!(
            c.param[0].share_mode(),
            param_spec::DimCheckMode::Permissive
        );
        assert_eq!((c.param[0].lr_mult(), c.param[0].decay_mult()), (1.0, 1.0));
        assert_eq!((c.param[1].lr_mult(), c.param[1].decay_mult()), (2.0, 0.0));
        assert!(c.param[1].name.is_none());
        assert_eq!(c.convolution_param.as_ref().unwrap().num_output(), 4);
        let d = &net.layer[2];
        let t = d.transform_param.as_ref().unwrap();
        assert_eq!((t.scale(), t.mirror(), t.crop_size()), (0.5, true, 4));
        let dp = d.data_param.as_ref().unwrap();
        assert!(dp.scale.is_none() && dp.mirror.is_none() && dp.crop_size.is_none());
        assert_eq!(dp.batch_size(), 2);
        let l = &net.layer[3];
        assert_eq!(l.loss_weight, [2.0]);
        assert_eq!(l.include[0].phase(), crate::proto::Phase::Train);
        assert_eq!(l.bottom, ["conv", "x"]);
    }

    #[test]
    fn mixed_nets_are_refused_and_batchnorm_is_frozen() {
        let mut both: NetParameter =
            prototxt::parse("layer { name: 'a' } layers { name: 'b' }", "t").unwrap();
        assert!(upgrade_net(&mut both)
            .unwrap_err()
            .to_string()
            .contains("both"));
        let mut bn: NetParameter = prototxt::parse(
            "layer { type: 'BatchNorm' param { lr_mult: 1 } param { } param { lr_mult: 3 } }",
            "t",
        )
        .unwrap();
        upgrade_net(&mut bn).unwrap();
        assert!(bn.layer[0]
            .param
            .iter()
            .all(|p| p.lr_mult == Some(0.0) && p.decay_mult == Some(0.0)));
    }

    #[test]
    fn solver_type_becomes_type() {
        let mut s: SolverParameter = prototxt::parse("solver_type: ADAGRAD", "s").unwrap();
        upgrade_solver(&mut s).unwrap();
        assert_eq!(s.r#type(), "AdaGrad");
        assert!(s.solver_type.is_none());
        let mut s: SolverParameter =
            prototxt::parse("solver_type: ADAM type: 'Adam'", "s").unwrap();
        assert!(upgrade_solver(&mut s).is_err());
    }
}
