//! crema: a declarative deep-learning framework in the spirit of Caffe.
//!
//! A model file (YAML with `caffe.proto`'s field names) is read by [`spec`], wired into a
//! [`Net`] of [`layers`] over [`Blob`]s, and trained by a solver. Weights move to and from Caffe
//! as `.caffemodel` files through [`weights`].

// Link OpenBLAS (Debian's system library) for cblas.
extern crate openblas_src;

pub mod blob;
pub mod caffe;
pub mod classify;
pub mod data;
pub mod dist;
pub mod error;
pub mod filler;
pub mod layers;
pub mod math;
pub mod model;
pub mod net;
pub mod onnx;
pub mod proto;
pub mod seq2seq;
pub mod solver;
pub mod spec;
pub mod testing;
pub mod tune;

pub use blob::Blob;
pub use error::{Error, Result};
pub use model::{load_net, load_solver};
pub use net::Net;
