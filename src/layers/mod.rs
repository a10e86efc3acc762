//! The `Layer` contract and the one registry from Caffe type string to constructor.
//!
//! Lifecycle (Caffe's): `setup` once (validates, creates and fills the learnable blobs),
//! `reshape` before every forward (sizes the tops), `forward` overwrites the tops, `backward`
//! **adds** into bottom and parameter diffs.
//!
//! In-place calls: when a layer runs in place (`top[0]` is `bottom[0]`, only for layers whose
//! [`Layer::allows_inplace`] is true and that have one bottom and one top), the net passes the
//! shared blob only once: `forward` and `reshape` get an empty `bottom` and read the input from
//! `top[0]`; `backward` gets an empty `top` and finds the top's diff in `bottom[0].diff`, which it
//! replaces with the bottom's diff. [`Inplace`] helps layers handle both cases.

use crate::proto::LayerParameter;
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;

mod accuracy;
mod dummy_data;
mod inner_product;
mod input;
mod neuron;
mod softmax;
mod softmax_loss;

pub use neuron::Inplace;

/// What a layer gets when it is set up.
pub struct SetupCtx<'a> {
    /// The net's random generator (fillers; layers that need randomness later seed their own).
    pub rng: &'a mut StdRng,
}

impl SetupCtx<'_> {
    /// A learnable blob of `shape`, filled by `filler` from the net's generator.
    pub fn filled(
        &mut self,
        shape: &[usize],
        filler: &crate::proto::FillerParameter,
    ) -> Result<Blob> {
        let mut b = Blob::new(shape);
        crate::filler::fill(filler, &mut b, self.rng)?;
        Ok(b)
    }
}

/// What a layer's backward reads of its tops' data, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TopUse {
    /// Nothing (the layer keeps what it needs, or reads its bottoms).
    #[default]
    Nothing,
    /// Only whether each value is positive.
    Sign,
    /// The values.
    Values,
}

/// How many bottoms and tops a layer takes; `None` means any number.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlobCounts {
    pub exact_bottom: Option<usize>,
    pub min_bottom: Option<usize>,
    pub max_bottom: Option<usize>,
    pub exact_top: Option<usize>,
    pub min_top: Option<usize>,
    pub max_top: Option<usize>,
}

impl BlobCounts {
    /// Exactly `b` bottoms and `t` tops.
    pub const fn exact(b: usize, t: usize) -> Self {
        BlobCounts {
            exact_bottom: Some(b),
            min_bottom: None,
            max_bottom: None,
            exact_top: Some(t),
            min_top: None,
            max_top: None,
        }
    }

    /// Checks the counts and returns Caffe's message when they are wrong.
    pub fn check(&self, ty: &str, bottoms: usize, tops: usize) -> Result<()> {
        let bad = |what: String| Err(Error::config(what));
        if let Some(n) = self.exact_bottom {
            if bottoms != n {
                return bad(format!(
                    "{ty} layer takes {n} bottom blob(s) as input, got {bottoms}"
                ));
            }
        }
        if let Some(n) = self.min_bottom {
            if bottoms < n {
                return bad(format!(
                    "{ty} layer takes at least {n} bottom blob(s) as input, got {bottoms}"
                ));
            }
        }
        if let Some(n) = self.max_bottom {
            if bottoms > n {
                return bad(format!(
                    "{ty} layer takes at most {n} bottom blob(s) as input, got {bottoms}"
                ));
            }
        }
        if let Some(n) = self.exact_top {
            if tops != n {
                return bad(format!(
                    "{ty} layer produces {n} top blob(s) as output, got {tops}"
                ));
            }
        }
        if let Some(n) = self.min_top {
            if tops < n {
                return bad(format!(
                    "{ty} layer produces at least {n} top blob(s) as output, got {tops}"
                ));
            }
        }
        if let Some(n) = self.max_top {
            if tops > n {
                return bad(format!(
                    "{ty} layer produces at most {n} top blob(s) as output, got {tops}"
                ));
            }
        }
        Ok(())
    }
}

/// One layer type. See the module documentation for the call contract.
pub trait Layer: Send {
    /// The Caffe type string (`"InnerProduct"`).
    fn type_name(&self) -> &'static str;

    /// Bottom and top counts this layer accepts.
    fn blob_counts(&self) -> BlobCounts;

    /// Validates against the bottoms' shapes and returns the learnable blobs, filled.
    fn setup(&mut self, _bottom: &[&Blob], _ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        Ok(Vec::new())
    }

    /// Sizes the tops (and internal buffers) for the bottoms' current shapes.
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()>;

    /// Computes the tops from the bottoms.
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()>;

    /// Adds the gradients into `bottom[i].diff` (where `propagate_down[i]`) and `params[j].diff`.
    /// The default adds nothing: layers with no gradient to give (data layers, `Accuracy`,
    /// `Silence`) keep it.
    fn backward(
        &mut self,
        _top: &[&Blob],
        _propagate_down: &[bool],
        _bottom: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        Ok(())
    }

    /// True when top 0 may be the same blob as bottom 0.
    fn allows_inplace(&self) -> bool {
        false
    }

    /// What `backward` reads of the tops' data (Sigmoid's `y (1 - y)`, Softmax, LRN read the
    /// values; ReLU only their sign): a later layer running in place on such a top then writes
    /// a new version of the blob instead of overwriting what this backward needs.
    fn backward_reads_top(&self) -> TopUse {
        TopUse::Nothing
    }

    /// True when running in place keeps the sign of every value, or zeroes a value where it
    /// also zeroes the gradient (ReLU, Dropout): such a layer may overwrite a top whose
    /// producer's backward reads only the sign ([`TopUse::Sign`]), as in `ReLU -> Dropout`.
    fn keeps_sign(&self) -> bool {
        false
    }

    /// Loss layers get `loss_weight: 1` on top 0 when the model gives none.
    fn is_loss(&self) -> bool {
        false
    }

    /// Whether `force_backward` may compute a gradient for this bottom (false for labels).
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        true
    }

    /// For a bottom that holds integer indices (labels, Embed ids), the exclusive upper bound of
    /// valid values given the bottoms' shapes; `None` for real-valued bottoms.
    fn index_bound(&self, _bottom: usize, _shapes: &[Vec<usize>]) -> Option<usize> {
        None
    }

    /// Whether the learnable blobs are statistics the solver must never update (BatchNorm).
    fn frozen_params(&self) -> bool {
        false
    }

    /// Re-seeds internal randomness (Dropout masks) so a gradient check sees the same function.
    fn reseed(&mut self, _seed: u64) {}

    /// Data parallelism: read worker `rank`'s share of the records, so that the batches of
    /// workers `0..count` together are the batch one worker with `count` x the batch size reads
    /// (see `data::prefetch::Shard`). Layers that read no records ignore it.
    fn shard(&mut self, _rank: usize, _count: usize) {}

    /// Floating-point operations of one forward pass, when known (for `crema time`).
    fn forward_flops(&self, _bottom: &[&Blob], _top: &[&Blob]) -> Option<f64> {
        None
    }

    /// For the gradient checker: inputs within `range` of `at` sit on a kink and are skipped.
    fn kink(&self) -> Option<(f32, f32)> {
        None
    }

    /// Records in the data set a data layer reads, when known (`crema test` says how much of
    /// it the iterations cover); `None` for the other layers.
    fn dataset_len(&self) -> Option<usize> {
        None
    }

    /// Downcasting hook for layers fed from Rust code (`MemoryData`); `None` for the others.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// Builds a layer from its parameters.
pub type Constructor = fn(&LayerParameter) -> Result<Box<dyn Layer>>;

mod abs_val;
mod bnll;
mod clip;
mod elu;
mod euclidean_loss;
mod exp;
mod flatten;
mod log;
mod power;
mod prelu;
mod relu;
mod reshape;
mod runs;
mod same_data;
mod sigmoid;
mod sigmoid_cross_entropy_loss;
mod silence;
mod split;
mod swish;
mod tanh;
mod threshold;
// caffe branch
mod contrastive_loss;
mod hinge_loss;
mod infogain_loss;
mod multinomial_logistic_loss;
mod triplet_loss;

/// Core layers: data-free building blocks, neurons, losses, utilities.
const CORE: &[(&str, Constructor)] = &[
    ("Input", input::create),
    ("DummyData", dummy_data::create),
    ("InnerProduct", inner_product::create),
    ("ReLU", relu::create),
    ("Softmax", softmax::create),
    ("SoftmaxWithLoss", softmax_loss::create),
    ("Accuracy", accuracy::create),
    ("PReLU", prelu::create),
    ("ELU", elu::create),
    ("Sigmoid", sigmoid::create),
    ("TanH", tanh::create),
    ("AbsVal", abs_val::create),
    ("Power", power::create),
    ("Exp", exp::create),
    ("Log", log::create),
    ("BNLL", bnll::create),
    ("Threshold", threshold::create),
    ("Clip", clip::create),
    ("Swish", swish::create),
    ("EuclideanLoss", euclidean_loss::create),
    (
        "SigmoidCrossEntropyLoss",
        sigmoid_cross_entropy_loss::create,
    ),
    ("Flatten", flatten::create),
    ("Reshape", reshape::create),
    ("Split", split::create),
    ("Silence", silence::create),
    // caffe branch: the remaining losses
    ("HingeLoss", hinge_loss::create),
    ("MultinomialLogisticLoss", multinomial_logistic_loss::create),
    ("InfogainLoss", infogain_loss::create),
    ("ContrastiveLoss", contrastive_loss::create),
    ("TripletLoss", triplet_loss::create),
];

pub(crate) mod base_conv;
mod conv_engine;
mod conv_nd;
mod convolution;
mod deconvolution;
mod im2col;
mod lrn;
mod pool_kernels;
mod pooling;
// vision-b layers
mod argmax;
mod batch_norm;
mod bias;
mod broadcast;
mod concat;
mod crop;
mod drop_connect;
mod dropout;
mod eltwise;
mod mvn;
mod reduction;
mod scale;
mod slice;
mod tile;
// caffe branch
mod filter;
mod parameter;
mod spp;

/// Vision layers (convolution, pooling, normalisation, tensor plumbing).
const VISION: &[(&str, Constructor)] = &[
    ("Convolution", convolution::create),
    ("Deconvolution", deconvolution::create),
    ("Pooling", pooling::create),
    ("LRN", lrn::create),
    ("Im2col", im2col::create),
    // vision-b layers
    ("BatchNorm", batch_norm::create),
    ("Scale", scale::create),
    ("Bias", bias::create),
    ("MVN", mvn::create),
    ("Concat", concat::create),
    ("Slice", slice::create),
    ("Eltwise", eltwise::create),
    ("Crop", crop::create),
    ("Tile", tile::create),
    ("Reduction", reduction::create),
    ("ArgMax", argmax::create),
    ("Dropout", dropout::create),
    ("DropConnect", drop_connect::create),
    // caffe branch
    ("SPP", spp::create),
    ("Filter", filter::create_filter),
    ("BatchReindex", filter::create_batch_reindex),
    ("Parameter", parameter::create),
];

mod data;
mod hdf5_data;
mod hdf5_output;
mod idx_data;
mod image_data;
mod loader;
mod memory_data;
pub use memory_data::{memory_data, MemoryData};

/// Data layers that read files.
const DATA: &[(&str, Constructor)] = &[
    ("IdxData", idx_data::create),
    ("Data", data::create),
    ("ImageData", image_data::create),
    ("MemoryData", memory_data::create),
    ("HDF5Data", hdf5_data::create),
    ("HDF5Output", hdf5_output::create),
];

mod embed;
mod lstm;
mod lstm_step;
mod recurrent;
mod rnn;
mod seq_pair_data;
mod text_data;

/// Recurrent layers.
const RECURRENT: &[(&str, Constructor)] = &[
    ("Embed", embed::create),
    ("LSTM", lstm::create),
    ("RNN", rnn::create),
    ("TextData", text_data::create),
    ("SeqPairData", seq_pair_data::create),
];

fn registry() -> impl Iterator<Item = &'static (&'static str, Constructor)> {
    CORE.iter()
        .chain(VISION.iter())
        .chain(DATA.iter())
        .chain(RECURRENT.iter())
}

/// Every registered type string, sorted.
pub fn known_types() -> Vec<&'static str> {
    let mut v: Vec<_> = registry().map(|(n, _)| *n).collect();
    v.sort_unstable();
    v
}

/// The constructor of Caffe's `Python` layer type (`python_param { module layer param_str }`).
/// The library has no interpreter: the `crema` Python module installs one when it is imported.
static PYTHON_LAYER: std::sync::OnceLock<Constructor> = std::sync::OnceLock::new();

/// Installs the constructor for `type: Python` layers (done once by the Python module; a second
/// call keeps the first). Without it such a layer is an error that says where it runs.
pub fn set_python_layer_constructor(ctor: Constructor) {
    let _ = PYTHON_LAYER.set(ctor);
}

/// Creates the layer for `param.type`; an unknown type lists the known ones and the nearest.
pub fn create(param: &LayerParameter) -> Result<Box<dyn Layer>> {
    let ty = param.r#type();
    if ty == "Python" {
        return match PYTHON_LAYER.get() {
            Some(ctor) => ctor(param),
            None => Err(Error::Layer {
                layer: param.name().to_string(),
                ty: ty.to_string(),
                message: "Python layers run only in a net built from Python (`import crema; \
                          crema.Net(...)`); the crema command line does not embed an \
                          interpreter"
                    .into(),
            }),
        };
    }
    match registry().find(|(n, _)| *n == ty) {
        Some((_, ctor)) => ctor(param),
        None => Err(Error::UnknownLayerType {
            layer: param.name().to_string(),
            ty: ty.to_string(),
            suggestion: crate::spec::nearest(ty, known_types().into_iter()).map(str::to_string),
            known: known_types().join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::layer_param_from_yaml;
    use crate::Error;
    use rand::SeedableRng;

    #[test]
    fn setup_ctx_fills_a_blob_of_the_shape() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut ctx = super::SetupCtx { rng: &mut rng };
        let b = ctx.filled(&[2, 3], &crate::filler::constant(0.5)).unwrap();
        assert_eq!(b.shape, vec![2, 3]);
        assert_eq!(b.data, vec![0.5; 6]);
    }

    #[test]
    fn python_layer_without_an_interpreter_says_where_it_runs() {
        let p = layer_param_from_yaml(
            "name: loss\ntype: Python\npython_param: { module: m, layer: L }",
        )
        .unwrap();
        let e = super::create(&p)
            .err()
            .expect("a Python layer needs the Python module");
        let msg = e.to_string();
        assert!(msg.contains("layer `loss` (type Python)"), "{msg}");
        assert!(msg.contains("does not embed an interpreter"), "{msg}");
    }

    #[test]
    fn unknown_type_is_a_structured_error_with_the_nearest_type() {
        let p = layer_param_from_yaml("name: ip\ntype: InnerProdcut").unwrap();
        match super::create(&p) {
            Err(Error::UnknownLayerType {
                layer,
                ty,
                suggestion,
                known,
            }) => {
                assert_eq!(layer, "ip");
                assert_eq!(ty, "InnerProdcut");
                assert_eq!(suggestion.as_deref(), Some("InnerProduct"));
                assert!(known.contains("EuclideanLoss, Exp"));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("an unknown type was accepted"),
        }
    }
}
