//! Rust types generated from `proto/caffe.proto` (the one schema of record) and its descriptor
//! pool, which the YAML and prototxt readers walk.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/caffe.rs"));

use std::sync::LazyLock;

/// The encoded `FileDescriptorSet` of `caffe.proto`.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/caffe_descriptor.bin"));

/// Descriptors of every message in `caffe.proto`.
pub static POOL: LazyLock<prost_reflect::DescriptorPool> = LazyLock::new(|| {
    prost_reflect::DescriptorPool::decode(DESCRIPTOR_SET)
        .expect("the descriptor set generated at build time decodes")
});

/// The descriptor of `caffe.<name>`.
pub fn message(name: &str) -> prost_reflect::MessageDescriptor {
    POOL.get_message_by_name(&format!("caffe.{name}"))
        .unwrap_or_else(|| panic!("caffe.proto defines message {name}"))
}
