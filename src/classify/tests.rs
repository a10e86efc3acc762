use super::*;
use crate::data::photo::{read, DecodeLimits};
use crate::proto::{NetParameter, Phase};
use crate::testing::{assert_close, err_text};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::testing::{image_from_fn as img, shared_data as data};

/// A net `Input (n x c x h x w) -> InnerProduct (k) -> Softmax`, weights filled by `gaussian`.
fn ip_net(c: usize, h: usize, w: usize, k: usize) -> Net {
    let yaml = format!(
        "name: tiny
layer:
  - {{ name: data, type: Input, top: data, input_param: {{ shape: [ {{ dim: [2, {c}, {h}, {w}] }} ] }} }}
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    inner_product_param:
      num_output: {k}
      weight_filler: {{ type: gaussian, std: 0.001 }}
      bias_filler: {{ type: gaussian, std: 0.1 }}
  - {{ name: prob, type: Softmax, bottom: ip, top: prob }}
"
    );
    let p: NetParameter = crate::spec::from_yaml_str(&yaml, "tiny.yaml").unwrap();
    Net::for_phase(&p, Phase::Test, &mut StdRng::seed_from_u64(3)).unwrap()
}

/// A net that is only its input: the "output" is the preprocessed input itself.
fn identity_net(c: usize, h: usize, w: usize) -> Net {
    let yaml = format!(
        "layer: [ {{ name: data, type: Input, top: data, input_param: {{ shape: [ {{ dim: [1, {c}, {h}, {w}] }} ] }} }} ]"
    );
    let p: NetParameter = crate::spec::from_yaml_str(&yaml, "id.yaml").unwrap();
    Net::for_phase(&p, Phase::Test, &mut StdRng::seed_from_u64(3)).unwrap()
}

/// Naive reference: softmax(W x + b) for the `ip_net` above.
fn reference(net: &Net, x: &[f32]) -> Vec<f32> {
    let p = net.params();
    let (wt, b) = (&p[0], &p[1]);
    let k = b.count();
    let z: Vec<f64> = (0..k)
        .map(|i| {
            let row = &wt.data[i * x.len()..(i + 1) * x.len()];
            row.iter()
                .zip(x)
                .map(|(&a, &v)| a as f64 * v as f64)
                .sum::<f64>()
                + b.data[i] as f64
        })
        .collect();
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
    z.iter().map(|v| ((v - m).exp() / s) as f32).collect()
}

#[test]
fn preprocess_swaps_channels_scales_and_subtracts_the_mean() {
    // 1x2 RGB image: pixel 0 = (10, 20, 30), pixel 1 = (40, 50, 60).
    let im = img(1, 2, 3, |_, x, c| (10 * (x * 3 + c + 1)) as u8);
    let mut pre = Preprocess::new(3, 1, 2);
    let mut out = vec![0.0; 6];
    pre.apply(&im, &mut out).unwrap();
    // Default: BGR planes, 0..255.
    assert_eq!(out, [30.0, 60.0, 20.0, 50.0, 10.0, 40.0]);
    pre.mean = Some(Mean::Values(vec![1.0, 2.0, 3.0]));
    pre.scale = 0.5;
    pre.raw_scale = 1.0;
    pre.channel_swap = vec![0, 1, 2];
    pre.apply(&im, &mut out).unwrap();
    let want: Vec<f32> = [10.0, 40.0, 20.0, 50.0, 30.0, 60.0]
        .iter()
        .zip([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
        .map(|(v, m)| (v / 255.0 - m) * 0.5)
        .collect();
    assert_close(&out, &want, 1e-6);
    // Mean image of the input's size: element-wise.
    let mi = Blob::from_data(&[3, 1, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let mut pre = Preprocess::new(3, 1, 2);
    pre.mean = Some(Mean::Image(mi));
    pre.apply(&im, &mut out).unwrap();
    assert_eq!(out, [29.0, 58.0, 17.0, 46.0, 5.0, 34.0]);
    // Mean image of another size: its per-channel mean (2, 6, 10).
    let mi = Blob::from_data(&[3, 2, 1], vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]).unwrap();
    pre.mean = Some(Mean::Image(mi));
    pre.apply(&im, &mut out).unwrap();
    assert_eq!(out, [28.0, 58.0, 14.0, 44.0, 0.0, 30.0]);
    // Wrong channel count or swap is an error, not a panic.
    pre.mean = Some(Mean::Values(vec![1.0, 2.0]));
    assert!(err_text(pre.apply(&im, &mut out)).contains("2 mean values"));
    pre.mean = None;
    pre.channel_swap = vec![0, 0, 1];
    assert!(err_text(pre.apply(&im, &mut out)).contains("permutation"));
}

#[test]
fn center_crop_and_oversample_take_caffes_crops() {
    // 4x5 grey image, value = 10*y + x; crop 2x3 after no resize (resize = image size).
    let im = img(4, 5, 1, |y, x, _| (10 * y + x) as u8);
    let mut pre = Preprocess::new(1, 2, 3);
    pre.resize = Some((4, 5));
    let mut one = vec![0.0; 6];
    pre.apply(&im, &mut one).unwrap();
    // Centre offset: ((4-2)/2, (5-3)/2) = (1, 1).
    assert_eq!(one, [11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
    pre.crops = Crops::Oversample;
    let mut ten = vec![0.0; 60];
    pre.apply(&im, &mut ten).unwrap();
    let crop = |oy: usize, ox: usize, mirror: bool| -> Vec<f32> {
        let mut v = Vec::new();
        for y in 0..2 {
            for x in 0..3 {
                let x = if mirror { 2 - x } else { x };
                v.push((10 * (oy + y) + ox + x) as f32);
            }
        }
        v
    };
    let offs = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)];
    let mut want = Vec::new();
    for mirror in [false, true] {
        for &(y, x) in &offs {
            want.extend(crop(y, x, mirror));
        }
    }
    assert_eq!(ten, want);
    // A resize smaller than the input cannot be cropped from.
    pre.resize = Some((1, 5));
    assert!(err_text(pre.apply(&im, &mut ten)).contains("smaller than the net's input"));
}

#[test]
fn identity_net_receives_the_preprocessed_batch() {
    let a = img(4, 6, 3, |y, x, c| (y * 40 + x * 5 + c * 2) as u8);
    let b = img(3, 3, 3, |y, x, c| (200 - y * 30 - x * 7 - c) as u8);
    let mut clf = Classifier::new(identity_net(3, 4, 4), None, |p| {
        p.mean = Some(Mean::Values(vec![100.0]));
        Ok(())
    })
    .unwrap();
    assert_eq!((clf.input.as_str(), clf.output.as_str()), ("data", "data"));
    let out = clf.classify(&[a.clone(), b.clone()]).unwrap();
    for (im, got) in [a, b].iter().zip(&out) {
        let mut want = vec![0.0; 48];
        clf.pre.apply(im, &mut want).unwrap();
        assert_close(got, &want, 1e-5);
    }
    // Oversampling averages the 10 crops; mirroring symmetric crops changes nothing, so
    // a horizontally symmetric image and resize = input give the plain input back.
    let sym = img(4, 4, 3, |y, x, c| (y * 9 + x.min(3 - x) * 20 + c) as u8);
    let mut clf = Classifier::new(identity_net(3, 4, 4), None, |p| {
        p.crops = Crops::Oversample;
        Ok(())
    })
    .unwrap();
    let got = clf.classify(std::slice::from_ref(&sym)).unwrap();
    let mut want = vec![0.0; 48];
    Preprocess::new(3, 4, 4).apply(&sym, &mut want).unwrap();
    assert_close(&got[0], &want, 1e-4);
}

#[test]
fn classifies_photos_with_larger_and_smaller_inputs() {
    let lim = DecodeLimits::default();
    // Colour net with input larger than the 32x32 photo: upscaled.
    let dog = read(data("caffe/cifar10_quick_v1/dog10.png"), Some(true), lim).unwrap();
    let chelsea = read(data("images/chelsea.png"), Some(true), lim).unwrap();
    let mut clf = Classifier::new(ip_net(3, 48, 40, 5), None, |_| Ok(())).unwrap();
    let out = clf.classify(&[dog.clone(), chelsea.clone()]).unwrap();
    for (im, got) in [&dog, &chelsea].iter().zip(&out) {
        let mut x = vec![0.0; 3 * 48 * 40];
        clf.pre.apply(im, &mut x).unwrap();
        assert_close(got, &reference(&clf.net, &x), 1e-5);
        assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Grey net, input smaller than the photo: resize to 40x40, then oversample 32x32 crops.
    let grey = read(data("images/coffee.png"), Some(false), lim).unwrap();
    let mut clf = Classifier::new(ip_net(1, 32, 32, 3), Some("ip"), |p| {
        p.resize = Some((40, 40));
        p.crops = Crops::Oversample;
        p.mean = Some(Mean::Values(vec![128.0]));
        p.scale = 1.0 / 64.0;
        Ok(())
    })
    .unwrap();
    let got = clf.classify(std::slice::from_ref(&grey)).unwrap();
    let mut crops = vec![0.0; 10 * 1024];
    clf.pre.apply(&grey, &mut crops).unwrap();
    // Output blob `ip` (the scores before Softmax), averaged over the 10 crops.
    let p = clf.net.params();
    let mut want = vec![0.0f32; 3];
    for x in crops.chunks_exact(1024) {
        for (k, w) in want.iter_mut().enumerate() {
            let row = &p[0].data[k * 1024..(k + 1) * 1024];
            *w += (row.iter().zip(x).map(|(a, v)| a * v).sum::<f32>() + p[1].data[k]) / 10.0;
        }
    }
    assert_close(&got[0], &want, 1e-4);
    // An image with the wrong channel count is refused, and a missing output blob named.
    assert!(err_text(clf.classify(&[chelsea])).contains("channels"));
    let e = err_text(Classifier::new(ip_net(1, 8, 8, 2), Some("prb"), |_| Ok(())));
    assert!(e.contains("did you mean `prob`"), "{e}");
}

#[test]
fn top_k_orders_by_value_then_index() {
    assert_eq!(
        top_k(&[0.1, 0.5, 0.2, 0.5], 3),
        vec![(1, 0.5), (3, 0.5), (2, 0.2)]
    );
    assert_eq!(top_k(&[0.3], 5), vec![(0, 0.3)]);
}

#[test]
fn mean_binaryproto() {
    let Mean::Image(m) =
        Mean::from_binaryproto(data("caffe/cifar10_quick_v1/mean.binaryproto")).unwrap()
    else {
        panic!("expected a mean image")
    };
    assert_eq!(m.shape, [3, 32, 32]);
    assert!(m.data.iter().all(|&v| (0.0..=255.0).contains(&v)));
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.binaryproto");
    std::fs::write(&junk, [0xFFu8, 0xFF, 0xFF]).unwrap();
    assert!(err_text(Mean::from_binaryproto(&junk)).contains("junk.binaryproto"));
}

/// `ImageData` and `Classifier` fed the same photos at the same size (and the same
/// `transform_param`) give the net exactly the same input values.
#[test]
fn image_data_and_classify_see_identical_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "chelsea.png 1\nrocket.jpg 2\n").unwrap();
    let root = format!("{}/", data("images").display());
    let lim = DecodeLimits::default();
    for (color, transform) in [
        (true, ""),
        (false, ""),
        (
            true,
            "transform_param: { scale: 0.0078125, mean_value: [104, 117, 123] }",
        ),
    ] {
        let c = if color { 3 } else { 1 };
        let yaml = format!(
            "type: ImageData\ntop: [data, label]\nimage_data_param: {{ source: '{}', \
             root_folder: '{root}', batch_size: 2, new_height: 45, new_width: 61, \
             is_color: {color} }}\n{transform}",
            list.display()
        );
        let mut h = crate::testing::Harness::new(&yaml, vec![]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, [2, c, 45, 61]);
        let p = crate::testing::layer_param_from_yaml(&yaml).unwrap();
        let mut clf = Classifier::new(identity_net(c, 45, 61), None, |pre| {
            match &p.transform_param {
                Some(t) => pre.use_transform(t),
                None => Ok(()),
            }
        })
        .unwrap();
        let photos: Vec<Image> = ["chelsea.png", "rocket.jpg"]
            .iter()
            .map(|f| crate::data::photo::read(data(&format!("images/{f}")), Some(color), lim))
            .collect::<Result<_>>()
            .unwrap();
        let got = clf.classify(&photos).unwrap();
        assert_eq!(got.concat(), h.top[0].data, "colour {color}, {transform}");
    }
}

#[test]
fn deploy_transform_comes_from_the_input_layer() {
    let yaml = "layer:
  - name: data
    type: Input
    top: data
    input_param: { shape: [ { dim: [2, 1, 2, 2] } ] }
    transform_param: { scale: 0.5, mean_value: 10 }
";
    let p: NetParameter = crate::spec::from_yaml_str(yaml, "deploy.yaml").unwrap();
    let t = deploy_transform(&p, "data").expect("the Input layer's transform_param");
    assert!(deploy_transform(&p, "other").is_none());
    let net = Net::for_phase(&p, Phase::Test, &mut StdRng::seed_from_u64(3)).unwrap();
    let mut clf = Classifier::new(net, None, |pre| pre.use_transform(t)).unwrap();
    let im = img(2, 2, 1, |y, x, _| (y * 2 + x) as u8 * 10);
    let out = clf.classify(&[im.clone(), im]).unwrap();
    assert_eq!(out[0], [-5.0, 0.0, 5.0, 10.0]);
    // Both means at once is an error, as in a data layer.
    let mut both = t.clone();
    both.mean_file = Some("m.binaryproto".into());
    let e = err_text(Preprocess::new(1, 2, 2).use_transform(&both));
    assert!(e.contains("not both"), "{e}");
}
