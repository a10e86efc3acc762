//! Compiles `proto/caffe.proto` with protox (pure Rust, no system `protoc`) into prost types and
//! an encoded descriptor set that the YAML and prototxt readers use at run time; and
//! `proto/onnx.proto` (the part of ONNX's schema that `crema export/import --onnx` use).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto/caffe.proto");
    let fds = protox::compile(["caffe.proto"], ["proto"]).expect("proto/caffe.proto must compile");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(
        out.join("caffe_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("write descriptor set");
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(fds)
        .expect("generate Rust types from caffe.proto");
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let onnx = protox::compile(["onnx.proto"], ["proto"]).expect("proto/onnx.proto must compile");
    prost_build::Config::new()
        .compile_fds(onnx)
        .expect("generate Rust types from onnx.proto");
}
