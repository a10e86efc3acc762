//! Caffe's V0 (pre-2014) upgrade (`UpgradeV0Net` in `upgrade_proto.cpp`): each `layers` entry
//! whose definition sits in an embedded `layer` (V0LayerParameter: lower-case type strings,
//! flat fields such as `num_output`, `kernelsize`, `batchsize`) becomes a V1 layer with the
//! type enum and the per-type `*_param` messages, and `padding` layers are folded into the
//! `pad` of the convolution or pooling that consumes them. The V1 -> current step then runs as
//! for any V1 net.

use crate::proto::v1_layer_parameter::LayerType;
use crate::proto::{
    pooling_parameter::PoolMethod, ConcatParameter, ConvolutionParameter, DataParameter,
    DropoutParameter, Hdf5DataParameter, ImageDataParameter, InfogainLossParameter,
    InnerProductParameter, LrnParameter, PoolingParameter, V0LayerParameter, V1LayerParameter,
    WindowDataParameter,
};
use crate::{Error, Result};

/// The V1 type of a V0 type string (`UpgradeV0LayerType`).
fn v0_type(t: &str) -> Option<LayerType> {
    use LayerType::*;
    Some(match t {
        "accuracy" => Accuracy,
        "bnll" => Bnll,
        "concat" => Concat,
        "conv" => Convolution,
        "data" => Data,
        "dropout" => Dropout,
        "euclidean_loss" => EuclideanLoss,
        "flatten" => Flatten,
        "hdf5_data" => Hdf5Data,
        "hdf5_output" => Hdf5Output,
        "im2col" => Im2col,
        "images" => ImageData,
        "infogain_loss" => InfogainLoss,
        "innerproduct" => InnerProduct,
        "lrn" => Lrn,
        "multinomial_logistic_loss" => MultinomialLogisticLoss,
        "pool" => Pooling,
        "relu" => Relu,
        "sigmoid" => Sigmoid,
        "softmax" => Softmax,
        "softmax_loss" => SoftmaxLoss,
        "split" => Split,
        "tanh" => Tanh,
        "window_data" => WindowData,
        _ => return Option::None,
    })
}

/// Upgrades every V0 layer of `layers` in place (a no-op for V1 layers).
pub fn upgrade_v0_layers(layers: &mut Vec<V1LayerParameter>) -> Result<()> {
    if !layers.iter().any(|l| l.layer.is_some()) {
        return Ok(());
    }
    fold_padding(layers)?;
    for (i, l) in layers.iter_mut().enumerate() {
        if let Some(v0) = l.layer.take() {
            upgrade_one(l, v0, i)?;
        }
    }
    Ok(())
}

/// Removes `padding` layers, giving their `pad` to the convolution or pooling that reads their
/// top and rewiring that layer to the padding layer's bottom (`UpgradeV0PaddingLayers`).
fn fold_padding(layers: &mut Vec<V1LayerParameter>) -> Result<()> {
    let mut i = 0;
    while i < layers.len() {
        let is_pad = layers[i]
            .layer
            .as_ref()
            .is_some_and(|v| v.r#type() == "padding");
        if !is_pad {
            i += 1;
            continue;
        }
        let pad_layer = layers.remove(i);
        let v0 = pad_layer.layer.clone().unwrap_or_default();
        let (Some(bottom), Some(top)) = (pad_layer.bottom.first(), pad_layer.top.first()) else {
            return Err(Error::Invalid(format!(
                "V0 padding layer `{}` needs one bottom and one top",
                v0.name()
            )));
        };
        for l in layers.iter_mut().skip(i) {
            if let Some(b) = l.bottom.iter_mut().find(|b| *b == top) {
                let ty = l
                    .layer
                    .as_ref()
                    .map(|v| v.r#type().to_string())
                    .unwrap_or_default();
                if ty != "conv" && ty != "pool" {
                    return Err(Error::Invalid(format!(
                        "V0 padding layer `{}` feeds a `{ty}` layer; only conv and pool layers \
                         can take its padding",
                        v0.name()
                    )));
                }
                *b = bottom.clone();
                if let Some(inner) = l.layer.as_mut() {
                    inner.pad = Some(v0.pad());
                }
            }
        }
    }
    Ok(())
}

/// Fills the V1 fields of `l` from its V0 definition (`UpgradeV0LayerParameter`).
fn upgrade_one(l: &mut V1LayerParameter, v0: V0LayerParameter, index: usize) -> Result<()> {
    let ty = v0_type(v0.r#type()).ok_or_else(|| {
        Error::Invalid(format!(
            "V0 layer #{index} (`{}`): unknown V0 layer type `{}`",
            v0.name(),
            v0.r#type()
        ))
    })?;
    if v0.name.is_some() {
        l.name = v0.name.clone();
    }
    l.r#type = Some(ty as i32);
    l.blobs.extend(v0.blobs.iter().cloned());
    l.blobs_lr.extend(&v0.blobs_lr);
    l.weight_decay.extend(&v0.weight_decay);
    use LayerType as T;
    match ty {
        T::Convolution => {
            let c = l
                .convolution_param
                .get_or_insert_with(ConvolutionParameter::default);
            c.num_output = v0.num_output;
            c.bias_term = v0.biasterm;
            c.weight_filler = v0.weight_filler.clone();
            c.bias_filler = v0.bias_filler.clone();
            c.pad.extend(v0.pad);
            c.kernel_size.extend(v0.kernelsize);
            c.group = v0.group;
            c.stride.extend(v0.stride);
        }
        T::InnerProduct => {
            let c = l
                .inner_product_param
                .get_or_insert_with(InnerProductParameter::default);
            c.num_output = v0.num_output;
            c.bias_term = v0.biasterm;
            c.weight_filler = v0.weight_filler.clone();
            c.bias_filler = v0.bias_filler.clone();
        }
        T::Pooling => {
            let p = l
                .pooling_param
                .get_or_insert_with(PoolingParameter::default);
            p.pad = v0.pad;
            p.kernel_size = v0.kernelsize;
            p.stride = v0.stride;
            if let Some(m) = v0.pool {
                let m = match m {
                    0 => PoolMethod::Max,
                    1 => PoolMethod::Ave,
                    _ => PoolMethod::Stochastic,
                };
                p.pool = Some(m as i32);
            }
        }
        T::Dropout => {
            l.dropout_param
                .get_or_insert_with(DropoutParameter::default)
                .dropout_ratio = v0.dropout_ratio;
        }
        T::Lrn => {
            let p = l.lrn_param.get_or_insert_with(LrnParameter::default);
            p.local_size = v0.local_size;
            p.alpha = v0.alpha;
            p.beta = v0.beta;
            p.k = v0.k;
        }
        T::Data => {
            let p = l.data_param.get_or_insert_with(DataParameter::default);
            p.source = v0.source.clone();
            p.batch_size = v0.batchsize;
            p.rand_skip = v0.rand_skip;
            p.scale = v0.scale;
            p.mean_file = v0.meanfile.clone();
            p.crop_size = v0.cropsize;
            p.mirror = v0.mirror;
        }
        T::ImageData => {
            let p = l
                .image_data_param
                .get_or_insert_with(ImageDataParameter::default);
            p.source = v0.source.clone();
            p.batch_size = v0.batchsize;
            p.rand_skip = v0.rand_skip;
            p.shuffle = v0.shuffle_images;
            p.new_height = v0.new_height.map(|v| v.max(0) as u32);
            p.new_width = v0.new_width.map(|v| v.max(0) as u32);
            p.scale = v0.scale;
            p.mean_file = v0.meanfile.clone();
            p.crop_size = v0.cropsize;
            p.mirror = v0.mirror;
        }
        T::WindowData => {
            let p = l
                .window_data_param
                .get_or_insert_with(WindowDataParameter::default);
            p.source = v0.source.clone();
            p.batch_size = v0.batchsize;
            p.scale = v0.scale;
            p.mean_file = v0.meanfile.clone();
            p.crop_size = v0.cropsize;
            p.mirror = v0.mirror;
            p.fg_threshold = v0.det_fg_threshold;
            p.bg_threshold = v0.det_bg_threshold;
            p.fg_fraction = v0.det_fg_fraction;
            p.context_pad = v0.det_context_pad;
            p.crop_mode = v0.det_crop_mode.clone();
        }
        T::Hdf5Data => {
            let p = l
                .hdf5_data_param
                .get_or_insert_with(Hdf5DataParameter::default);
            p.source = v0.source.clone();
            p.batch_size = v0.batchsize;
        }
        T::Hdf5Output => {
            l.hdf5_output_param = v0.hdf5_output_param.clone();
        }
        T::InfogainLoss => {
            l.infogain_loss_param
                .get_or_insert_with(InfogainLossParameter::default)
                .source = v0.source.clone();
        }
        T::Concat => {
            l.concat_param
                .get_or_insert_with(ConcatParameter::default)
                .concat_dim = v0.concat_dim;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::caffe::prototxt;
    use crate::caffe::upgrade::upgrade_net;
    use crate::proto::NetParameter;

    #[test]
    fn v0_net_with_padding_upgrades_like_caffe() {
        // In the style of Caffe's 2013 imagenet.prototxt.
        let text = r#"
name: "v0"
layers { layer { name: "data" type: "data" source: "train_db" meanfile: "m.binaryproto"
  batchsize: 256 cropsize: 227 mirror: true } top: "data" top: "label" }
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 stride: 4
  weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 }
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 } bottom: "pad1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 3 stride: 2 }
  bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 5 alpha: 0.0001 beta: 0.75 }
  bottom: "pool1" top: "norm1" }
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.4 } bottom: "norm1" top: "norm1" }
layers { layer { name: "fc" type: "innerproduct" num_output: 10 biasterm: false }
  bottom: "norm1" top: "fc" }
layers { layer { name: "loss" type: "softmax_loss" } bottom: "fc" bottom: "label" }
"#;
        let mut net: NetParameter = prototxt::parse(text, "t").unwrap();
        upgrade_net(&mut net).unwrap();
        let types: Vec<&str> = net.layer.iter().map(|l| l.r#type()).collect();
        assert_eq!(
            types,
            [
                "Data",
                "Convolution",
                "Pooling",
                "LRN",
                "Dropout",
                "InnerProduct",
                "SoftmaxWithLoss"
            ]
        );
        let d = &net.layer[0];
        assert_eq!(d.data_param.as_ref().unwrap().batch_size(), 256);
        let t = d.transform_param.as_ref().unwrap();
        assert_eq!(
            (t.crop_size(), t.mirror(), t.mean_file()),
            (227, true, "m.binaryproto")
        );
        let c = &net.layer[1];
        assert_eq!(c.bottom, ["data"], "the padding layer is folded away");
        let cp = c.convolution_param.as_ref().unwrap();
        assert_eq!(
            (cp.num_output(), cp.pad.clone(), cp.kernel_size.clone()),
            (96, vec![2], vec![11])
        );
        assert_eq!(cp.stride, [4]);
        assert_eq!(cp.weight_filler.as_ref().unwrap().std(), 0.01);
        assert_eq!((c.param[1].lr_mult(), c.param[1].decay_mult()), (2.0, 0.0));
        let p = net.layer[2].pooling_param.as_ref().unwrap();
        assert_eq!((p.kernel_size(), p.stride()), (3, 2));
        assert_eq!(net.layer[3].lrn_param.as_ref().unwrap().alpha(), 0.0001);
        assert_eq!(
            net.layer[4].dropout_param.as_ref().unwrap().dropout_ratio(),
            0.4
        );
        assert!(!net.layer[5]
            .inner_product_param
            .as_ref()
            .unwrap()
            .bias_term());
    }

    #[test]
    fn unknown_v0_type_and_bad_padding_are_errors() {
        let mut net: NetParameter =
            prototxt::parse("layers { layer { name: 'a' type: 'warp' } }", "t").unwrap();
        assert!(upgrade_net(&mut net)
            .unwrap_err()
            .to_string()
            .contains("warp"));
        let mut net: NetParameter = prototxt::parse(
            "layers { layer { name: 'p' type: 'padding' pad: 1 } bottom: 'x' top: 'y' }
             layers { layer { name: 'r' type: 'relu' } bottom: 'y' top: 'z' }",
            "t",
        )
        .unwrap();
        assert!(upgrade_net(&mut net)
            .unwrap_err()
            .to_string()
            .contains("relu"));
    }
}
