use super::*;

/// Direct convolution in f64 (the oracle), stride 1, no dilation: `x` is `n x c x h x w`,
/// `w` is `k x c/g x r x r`.
#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f32],
    [n, c, h, wd]: [usize; 4],
    w: &[f32],
    b: &[f32],
    k: usize,
    r: usize,
    pad: usize,
    g: usize,
) -> Vec<f32> {
    let (oh, ow) = (h + 2 * pad + 1 - r, wd + 2 * pad + 1 - r);
    let (cg, kg) = (c / g, k / g);
    let mut y = vec![0.0; n * k * oh * ow];
    for i in 0..n {
        for o in 0..k {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = b[o] as f64;
                    for ci in 0..cg {
                        let cin = (o / kg) * cg + ci;
                        for ky in 0..r {
                            for kx in 0..r {
                                let (iy, ix) = (oy + ky, ox + kx);
                                if iy < pad || ix < pad || iy - pad >= h || ix - pad >= wd {
                                    continue;
                                }
                                let xv = x[((i * c + cin) * h + iy - pad) * wd + ix - pad];
                                s += xv as f64 * w[((o * cg + ci) * r + ky) * r + kx] as f64;
                            }
                        }
                    }
                    y[((i * k + o) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    y
}

fn geom(c: usize, h: usize, w: usize, r: usize, pad: usize) -> ConvGeom {
    ConvGeom {
        channels: c,
        height: h,
        width: w,
        kernel_h: r,
        kernel_w: r,
        pad_h: pad,
        pad_w: pad,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
    }
}

fn run(conv: &WinoConv, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut u = vec![0.0; conv.u_len()];
    conv.transform_weights(w, &mut u);
    let mut y = vec![f32::NAN; conv.num * conv.co * conv.geom.col_cols()];
    conv.forward(x, &u, Some(b), &mut y);
    y
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - e).abs() <= 2e-5 * scale,
            "{what}: element {i}: {a} vs {e} (scale {scale})"
        );
    }
}

/// Odd sizes, channel counts that are not multiples of 8, groups, padding 0, 1, 2 and 3 (a
/// window wholly in the padding), outputs smaller than a tile, batch 1 and batches larger than the thread count and than a
/// chunk.
#[test]
fn matches_direct_convolution() {
    // (n, c, h, w, k, r, pad, group)
    let cases = [
        (1, 16, 7, 9, 16, 3, 1, 1),
        (5, 19, 11, 6, 21, 3, 0, 1),
        (3, 34, 13, 13, 36, 3, 1, 2),
        (1, 8, 5, 5, 8, 3, 3, 1),
        (2, 9, 3, 3, 10, 3, 0, 1),
        (2, 16, 9, 10, 24, 3, 2, 1),
        (6, 24, 8, 7, 40, 3, 1, 2),
        (3, 6, 5, 6, 9, 3, 0, 3),
        (1, 5, 2, 2, 3, 3, 2, 1),
    ];
    for (n, c, h, wd, k, r, pad, g) in cases {
        let conv = WinoConv {
            geom: geom(c, h, wd, r, pad),
            co: k,
            group: g,
            num: n,
        };
        let x: Vec<f32> = (0..n * c * h * wd)
            .map(|i| (i as f32 * 0.731).sin())
            .collect();
        let w: Vec<f32> = (0..k * c / g * r * r)
            .map(|i| (i as f32 * 0.377).cos() * 0.5)
            .collect();
        let b: Vec<f32> = (0..k).map(|i| i as f32 * 0.1 - 0.3).collect();
        let want = naive(&x, [n, c, h, wd], &w, &b, k, r, pad, g);
        let what = format!("n{n} c{c} {h}x{wd} k{k} r{r} pad{pad} g{g}");
        close(&run(&conv, &x, &w, &b), &want, &what);
        // One image per chunk gives the same.
        let one = CHUNK_LIMIT.with(|l| l.replace(1));
        close(&run(&conv, &x, &w, &b), &want, &format!("{what}, chunked"));
        CHUNK_LIMIT.with(|l| l.set(one));
    }
}

#[test]
fn applies_only_to_plain_3x3_with_enough_channels() {
    let g = geom(64, 13, 13, 3, 1);
    assert!(WinoConv::applies(&g, 64, 1));
    assert!(WinoConv::applies(&g, 64, 2));
    assert!(!WinoConv::applies(&g, 64, 8));
    assert!(!WinoConv::applies(&g, 8, 1));
    assert!(!WinoConv::applies(&geom(32, 16, 16, 5, 2), 32, 1));
    for tweak in [
        |g: &mut ConvGeom| g.stride_h = 2,
        |g: &mut ConvGeom| g.dilation_w = 2,
        |g: &mut ConvGeom| g.kernel_w = 1,
        |g: &mut ConvGeom| {
            g.kernel_h = 1;
            g.kernel_w = 1
        },
        |g: &mut ConvGeom| {
            g.kernel_h = 7;
            g.kernel_w = 7
        },
    ] {
        let mut t = g;
        tweak(&mut t);
        assert!(!WinoConv::applies(&t, 64, 1), "{t:?}");
    }
}

#[test]
fn weight_cache_follows_weight_changes() {
    let conv = WinoConv {
        geom: geom(16, 6, 6, 3, 1),
        co: 16,
        group: 1,
        num: 1,
    };
    let mut w: Vec<f32> = (0..16 * 16 * 9).map(|i| (i as f32).sin()).collect();
    let mut cache = WeightCache::default();
    let u1 = cache.get(&conv, &w).to_vec();
    let mut fresh = vec![0.0; conv.u_len()];
    conv.transform_weights(&w, &mut fresh);
    assert_eq!(u1, fresh);
    assert_eq!(cache.get(&conv, &w), &u1[..]);
    // A changed weight (even only its sign bit) is noticed.
    w[100] = -w[100];
    conv.transform_weights(&w, &mut fresh);
    assert_ne!(fresh, u1);
    assert_eq!(cache.get(&conv, &w), &fresh[..]);
    w[5] = 0.0;
    let before = cache.get(&conv, &w).to_vec();
    w[5] = -0.0;
    conv.transform_weights(&w, &mut fresh);
    assert_eq!(cache.get(&conv, &w), &fresh[..]);
    assert_eq!(before.len(), fresh.len());
}
