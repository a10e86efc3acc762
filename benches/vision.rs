//! Micro-benchmarks of the vision kernels at the layer sizes of LeNet, CIFAR10-quick and
//! AlexNet/CaffeNet: `cargo bench --bench vision [filter]`.

use crema::math::im2col::{im2col_batch, ConvGeom};
use crema::testing::Harness;
use crema::Blob;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn noise(shape: &[usize]) -> Blob {
    let n: usize = shape.iter().product();
    Blob::from_data(
        shape,
        (0..n)
            .map(|i| ((i * 7919) % 1013) as f32 / 500.0 - 1.0)
            .collect(),
    )
    .expect("shape and data agree")
}

fn layer(yaml: &str, shape: &[usize]) -> Harness {
    let mut h = Harness::new(yaml, vec![noise(shape)]).expect("valid layer");
    h.forward().expect("forward");
    let n = h.top[0].count();
    h.top[0].diff = (0..n).map(|i| ((i * 31) % 17) as f32 / 17.0).collect();
    h
}

fn bench_layer(c: &mut Criterion, name: &str, yaml: &str, shape: &[usize]) {
    let mut h = layer(yaml, shape);
    c.bench_function(&format!("{name}/forward"), |b| {
        b.iter(|| h.forward().expect("forward"))
    });
    c.bench_function(&format!("{name}/backward"), |b| {
        b.iter(|| h.backward(&[true]).expect("backward"))
    });
}

fn conv(num: usize, k: usize, pad: usize, stride: usize, group: usize) -> String {
    format!(
        "type: Convolution\nconvolution_param: {{ num_output: {num}, kernel_size: {k}, pad: {pad}, stride: {stride}, group: {group}, weight_filler: {{ type: gaussian, std: 0.01 }} }}"
    )
}

fn benches(c: &mut Criterion) {
    // GEMM at the shape of CaffeNet conv2 (per group, whole batch of 10): 128 x 7290 x 1200.
    let (m, n, k) = (128, 7290, 1200);
    let a = vec![0.5f32; m * k];
    let bm = vec![0.25f32; k * n];
    let mut cm = vec![0.0f32; m * n];
    c.bench_function("gemm/128x7290x1200", |b| {
        b.iter(|| crema::math::gemm(false, false, m, n, k, 1.0, &a, &bm, 0.0, black_box(&mut cm)))
    });
    // im2col of a CIFAR10-quick conv2 batch (100 x 32 x 16 x 16, 5x5, pad 2).
    let g = ConvGeom {
        channels: 32,
        height: 16,
        width: 16,
        kernel_h: 5,
        kernel_w: 5,
        pad_h: 2,
        pad_w: 2,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
    };
    let x = noise(&[100, 32, 16, 16]).data;
    let mut col = vec![0.0f32; g.col_rows() * 100 * g.col_cols()];
    c.bench_function("im2col/cifar_conv2_b100", |b| {
        b.iter(|| im2col_batch(&x, &g, 100, black_box(&mut col)))
    });
    bench_layer(
        c,
        "conv/lenet_conv1_b64",
        &conv(20, 5, 0, 1, 1),
        &[64, 1, 28, 28],
    );
    bench_layer(
        c,
        "conv/lenet_conv2_b64",
        &conv(50, 5, 0, 1, 1),
        &[64, 20, 12, 12],
    );
    bench_layer(
        c,
        "conv/cifar_conv2_b100",
        &conv(32, 5, 2, 1, 1),
        &[100, 32, 16, 16],
    );
    bench_layer(
        c,
        "conv/alexnet_conv1_b10",
        &conv(96, 11, 0, 4, 1),
        &[10, 3, 227, 227],
    );
    bench_layer(
        c,
        "conv/alexnet_conv2_b10",
        &conv(256, 5, 2, 1, 2),
        &[10, 96, 27, 27],
    );
    bench_layer(
        c,
        "pool/cifar_pool1_max_b100",
        "type: Pooling\npooling_param: { pool: MAX, kernel_size: 3, stride: 2 }",
        &[100, 32, 32, 32],
    );
    bench_layer(
        c,
        "pool/cifar_pool2_ave_b100",
        "type: Pooling\npooling_param: { pool: AVE, kernel_size: 3, stride: 2 }",
        &[100, 32, 16, 16],
    );
    bench_layer(
        c,
        "lrn/caffenet_norm1_b10",
        "type: LRN\nlrn_param: { local_size: 5, alpha: 0.0001, beta: 0.75 }",
        &[10, 96, 27, 27],
    );
}

criterion_group! {
    name = vision;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(vision);
