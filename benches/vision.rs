//! Micro-benchmarks of the vision kernels at the layer sizes of LeNet, CIFAR10-quick and
//! AlexNet/CaffeNet: `cargo bench --bench vision [filter]`.
//!
//! Time is the process's CPU time (all threads), not wall time, so the figures hold on a
//! shared, busy machine; the throughput column is GFLOP/s of CPU time (the layer's nominal
//! FLOPs: a direct convolution's multiply-adds, whatever algorithm runs). Run with
//! `RAYON_NUM_THREADS=1` for per-core figures free of the threads' waits. Every convolution
//! is also timed on the im2col + GEMM path, Winograd and the direct convolution off
//! (`.../forward_im2col`, `.../backward_im2col`): the before and after of those kernels.

use crema::math::im2col::{im2col_batch, ConvGeom};
use crema::math::{conv_gemm, winograd};
use crema::testing::Harness;
use crema::Blob;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// CPU time of the whole process, in nanoseconds.
struct CpuTime;

fn cpu_now() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain clock read into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
}

impl Measurement for CpuTime {
    type Intermediate = f64;
    type Value = f64;
    fn start(&self) -> f64 {
        cpu_now()
    }
    fn end(&self, i: f64) -> f64 {
        cpu_now() - i
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, v: &f64) -> f64 {
        *v
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms cpu"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (n, unit) = match *t {
            Throughput::Elements(n) => (n as f64, "GFLOP/s"),
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64, "GB/s"),
        };
        values.iter_mut().for_each(|v| *v = n / *v);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

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

type C = Criterion<CpuTime>;

/// Forward (and backward unless `forward_only`) of one layer; with `im2col` (convolutions)
/// timed a second time on the im2col + GEMM path, Winograd and the direct convolution off:
/// the before and after of those kernels.
fn bench_layer(
    c: &mut C,
    name: &str,
    yaml: &str,
    shape: &[usize],
    [forward_only, im2col]: [bool; 2],
) {
    let mut h = layer(yaml, shape);
    let flops = {
        let (b, t): (Vec<&Blob>, Vec<&Blob>) = (h.bottom.iter().collect(), h.top.iter().collect());
        h.layer.forward_flops(&b, &t)
    };
    let mut g = c.benchmark_group(name);
    let elements = |f: f64| Throughput::Elements(f as u64);
    let paths: &[(&str, bool)] = if im2col {
        &[("", true), ("_im2col", false)]
    } else {
        &[("", true)]
    };
    for &(suffix, fast) in paths {
        winograd::set_enabled(fast);
        conv_gemm::set_enabled(fast);
        if let Some(f) = flops {
            g.throughput(elements(f));
        }
        g.bench_function(format!("forward{suffix}"), |b| {
            b.iter(|| h.forward().expect("forward"))
        });
        if !forward_only {
            if let Some(f) = flops {
                g.throughput(elements(2.0 * f));
            }
            g.bench_function(format!("backward{suffix}"), |b| {
                b.iter(|| h.backward(&[true]).expect("backward"))
            });
        }
    }
    winograd::set_enabled(true);
    conv_gemm::set_enabled(true);
    g.finish();
}

fn conv(num: usize, k: usize, pad: usize, stride: usize, group: usize) -> String {
    format!(
        "type: Convolution\nconvolution_param: {{ num_output: {num}, kernel_size: {k}, pad: {pad}, stride: {stride}, group: {group}, weight_filler: {{ type: gaussian, std: 0.01 }} }}"
    )
}

fn benches(c: &mut C) {
    // GEMM at the shape of CaffeNet conv2 (per group, whole batch of 10): 128 x 7290 x 1200.
    let (m, n, k) = (128, 7290, 1200);
    let a = vec![0.5f32; m * k];
    let bm = vec![0.25f32; k * n];
    let mut cm = vec![0.0f32; m * n];
    let mut g = c.benchmark_group("gemm");
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.bench_function("128x7290x1200", |b| {
        b.iter(|| crema::math::gemm(false, false, m, n, k, 1.0, &a, &bm, 0.0, black_box(&mut cm)))
    });
    g.finish();
    // im2col of a CIFAR10-quick conv2 batch (100 x 32 x 16 x 16, 5x5, pad 2).
    let geom = ConvGeom {
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
    let mut col = vec![0.0f32; geom.col_rows() * 100 * geom.col_cols()];
    let mut g = c.benchmark_group("im2col");
    g.throughput(Throughput::Bytes((col.len() * 4) as u64));
    g.bench_function("cifar_conv2_b100", |b| {
        b.iter(|| im2col_batch(&x, &geom, 100, black_box(&mut col)))
    });
    g.finish();
    // (name, layer, bottom shape, [forward only, also on the im2col path])
    let layers: &[(&str, String, &[usize], [bool; 2])] = &[
        ("conv/lenet_conv1_b64", conv(20, 5, 0, 1, 1), &[64, 1, 28, 28], [false, true]),
        ("conv/lenet_conv2_b64", conv(50, 5, 0, 1, 1), &[64, 20, 12, 12], [false, true]),
        ("conv/cifar_conv1_b100", conv(32, 5, 2, 1, 1), &[100, 3, 32, 32], [false, true]),
        ("conv/cifar_conv2_b100", conv(32, 5, 2, 1, 1), &[100, 32, 16, 16], [false, true]),
        ("conv/cifar_conv3_b100", conv(64, 5, 2, 1, 1), &[100, 32, 8, 8], [false, true]),
        ("conv/alexnet_conv1_b10", conv(96, 11, 0, 4, 1), &[10, 3, 227, 227], [true; 2]),
        ("conv/alexnet_conv2_b10", conv(256, 5, 2, 1, 2), &[10, 96, 27, 27], [true; 2]),
        ("conv/alexnet_conv3_b10", conv(384, 3, 1, 1, 1), &[10, 256, 13, 13], [true; 2]),
        ("conv/alexnet_conv4_b10", conv(384, 3, 1, 1, 2), &[10, 384, 13, 13], [true; 2]),
        ("conv/alexnet_conv5_b10", conv(256, 3, 1, 1, 2), &[10, 384, 13, 13], [true; 2]),
        (
            "pool/cifar_pool1_max_b100",
            "type: Pooling\npooling_param: { pool: MAX, kernel_size: 3, stride: 2 }".into(),
            &[100, 32, 32, 32],
            [false; 2],
        ),
        (
            "pool/caffenet_pool1_max_b10",
            "type: Pooling\npooling_param: { pool: MAX, kernel_size: 3, stride: 2 }".into(),
            &[10, 96, 55, 55],
            [false; 2],
        ),
        (
            "pool/cifar_pool1_ave_b100",
            "type: Pooling\npooling_param: { pool: AVE, kernel_size: 3, stride: 2 }".into(),
            &[100, 32, 32, 32],
            [false; 2],
        ),
        (
            "pool/cifar_pool2_ave_b100",
            "type: Pooling\npooling_param: { pool: AVE, kernel_size: 3, stride: 2 }".into(),
            &[100, 32, 16, 16],
            [false; 2],
        ),
        (
            "lrn/caffenet_norm1_b10",
            "type: LRN\nlrn_param: { local_size: 5, alpha: 0.0001, beta: 0.75 }".into(),
            &[10, 96, 27, 27],
            [false; 2],
        ),
        (
            "ip/caffenet_fc6_b10",
            "type: InnerProduct\ninner_product_param: { num_output: 4096, weight_filler: { type: gaussian, std: 0.005 } }".into(),
            &[10, 256, 6, 6],
            [true, false],
        ),
    ];
    for (name, yaml, shape, flags) in layers {
        bench_layer(c, name, yaml, shape, *flags);
    }
}

criterion_group! {
    name = vision;
    config = Criterion::default().with_measurement(CpuTime).sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(vision);
