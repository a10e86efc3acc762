//! Hyperparameter search (`crema tune`): a search space over solver and model fields named by
//! their `caffe.proto` paths ([`crate::spec::space`]), a Gaussian-process surrogate with a Matérn 5/2 kernel
//! whose hyperparameters are fitted by marginal likelihood ([`gp`]), and the proposals: Halton
//! points first, then expected improvement with a constant liar for batches ([`search`]).

pub mod gp;
pub mod search;

pub use crate::spec::space::{Domain, Param, ParamValue, Space, Target};
pub use search::{Method, Searcher};
