use super::*;
use crate::proto::{NetParameter, Phase};
use crate::testing::{assert_close, err_text};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: the tests need ../shared/data",
        p.display()
    );
    p
}

fn img(h: usize, w: usize, c: usize, f: impl Fn(usize, usize, usize) -> u8) -> Image {
    let mut d = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                d.push(f(y, x, ch));
            }
        }
    }
    Image::new(h, w, c, d).unwrap()
}

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
fn bilinear_resize_matches_hand_values() {
    // 1-D [0, 100] up to 4: OpenCV's INTER_LINEAR gives [0, 25, 75, 100].
    let im = img(1, 2, 1, |_, x, _| [0, 100][x]);
    assert_close(&resize_bilinear(&im, 1, 4), &[0.0, 25.0, 75.0, 100.0], 1e-4);
    // Down by 2: each output pixel is the mean of the 2x2 block it covers.
    let im = img(4, 4, 1, |y, x, _| (y * 4 + x) as u8 * 10);
    let expect: Vec<f32> = [(0, 0), (0, 2), (2, 0), (2, 2)]
        .iter()
        .map(|&(y, x)| {
            let v = |y: usize, x: usize| ((y * 4 + x) * 10) as f32;
            (v(y, x) + v(y, x + 1) + v(y + 1, x) + v(y + 1, x + 1)) / 4.0
        })
        .collect();
    assert_close(&resize_bilinear(&im, 2, 2), &expect, 1e-4);
    // Same size: a plain copy; channels stay separate.
    let im = img(3, 2, 3, |y, x, c| (y * 50 + x * 10 + c) as u8);
    let out = resize_bilinear(&im, 3, 2);
    assert_eq!(out, im.data.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let up = resize_bilinear(&im, 6, 4);
    assert_eq!(up[0..3], [0.0, 1.0, 2.0]);
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
fn decodes_real_photos_in_colour_and_grey() {
    let chelsea = decode_image(&data("images/chelsea.png"), 3, DecodeLimits::default()).unwrap();
    assert_eq!(
        (chelsea.height, chelsea.width, chelsea.channels),
        (300, 451, 3)
    );
    let grey = decode_image(&data("images/chelsea.png"), 1, DecodeLimits::default()).unwrap();
    assert_eq!((grey.height, grey.width, grey.channels), (300, 451, 1));
    // Grey = BT.601 luma of the colour pixels.
    for i in [0, 1000, 77777] {
        let p = &chelsea.data[i * 3..i * 3 + 3];
        let l = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        assert!((grey.data[i] as f32 - l).abs() <= 0.5 + 1e-3);
    }
    let rocket = decode_image(&data("images/rocket.jpg"), 3, DecodeLimits::default()).unwrap();
    assert_eq!((rocket.height, rocket.width), (427, 640));
    // The CIFAR PNGs carry alpha: it is dropped.
    let dog = decode_image(
        &data("caffe/cifar10_quick_v1/dog10.png"),
        3,
        DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!((dog.height, dog.width, dog.channels), (32, 32, 3));
}

#[test]
fn decodes_every_supported_format() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 99]));
    for (ext, fmt) in [
        ("png", image::ImageFormat::Png),
        ("bmp", image::ImageFormat::Bmp),
        ("tif", image::ImageFormat::Tiff),
        ("webp", image::ImageFormat::WebP),
        ("gif", image::ImageFormat::Gif),
        ("ppm", image::ImageFormat::Pnm),
    ] {
        let p = dir.path().join(format!("x.{ext}"));
        rgb.save_with_format(&p, fmt).unwrap();
        let im = decode_image(&p, 3, DecodeLimits::default()).unwrap();
        assert_eq!((im.height, im.width), (5, 7), "{ext}");
        if ext != "gif" {
            // Lossless formats give the pixels back (GIF quantises its palette).
            assert_eq!(im.data, rgb.as_raw().clone(), "{ext}");
        }
    }
    // JPEG (lossy): close to the original.
    let p = dir.path().join("x.jpg");
    rgb.save_with_format(&p, image::ImageFormat::Jpeg).unwrap();
    let im = decode_image(&p, 3, DecodeLimits::default()).unwrap();
    assert_eq!((im.height, im.width), (5, 7));
    // A grey image replicated to colour.
    let p = dir.path().join("g.png");
    image::GrayImage::from_fn(3, 2, |x, _| image::Luma([x as u8 * 50]))
        .save(&p)
        .unwrap();
    let im = decode_image(&p, 3, DecodeLimits::default()).unwrap();
    assert_eq!(im.data[..6], [0, 0, 0, 50, 50, 50]);
    // The contents decide, not the extension: a PNG named .jpg reads fine.
    let p2 = dir.path().join("png-named.jpg");
    std::fs::copy(&p, &p2).unwrap();
    assert!(decode_image(&p2, 1, DecodeLimits::default()).is_ok());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A small PNG whose valid IHDR chunk claims `w x h` RGB pixels.
pub(super) fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(w.to_be_bytes());
    chunk.extend(h.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]);
    let mut put = |chunk: &[u8]| {
        v.extend((chunk.len() as u32 - 4).to_be_bytes());
        v.extend(chunk);
        v.extend(crc32(chunk).to_be_bytes());
    };
    put(&chunk);
    // A few bytes of a zlib stream: the decoder has its header before it needs pixels.
    put(b"IDAT\x78\x9c\x63\x60");
    put(b"IEND");
    v
}

#[test]
fn bad_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let lim = DecodeLimits::default();
    let missing = err_text(decode_image(&dir.path().join("nope.png"), 3, lim));
    assert!(
        missing.contains("nope.png") && missing.contains("No such file"),
        "{missing}"
    );
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "this is not a picture\n").unwrap();
    let e = err_text(decode_image(&text, 3, lim));
    assert!(e.contains("notes.jpg") && e.contains("decode"), "{e}");
    let full = std::fs::read(data("images/chelsea.png")).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let e = err_text(decode_image(&cut, 3, lim));
    assert!(e.contains("cut.png") && e.contains("decode"), "{e}");
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, png_header(100_000, 100_000)).unwrap();
    let e = err_text(decode_image(&bomb, 3, lim));
    assert!(e.contains("bomb.png") && e.contains("too large"), "{e}");
    // Within the side limit but over the memory limit: also refused before allocating.
    std::fs::write(&bomb, png_header(16000, 16000)).unwrap();
    let e = err_text(decode_image(&bomb, 3, lim));
    assert!(e.contains("too large"), "{e}");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert!(decode_image(&empty, 3, lim).is_err());
}

#[test]
fn identity_net_receives_the_preprocessed_batch() {
    let a = img(4, 6, 3, |y, x, c| (y * 40 + x * 5 + c * 2) as u8);
    let b = img(3, 3, 3, |y, x, c| (200 - y * 30 - x * 7 - c) as u8);
    let mut clf = Classifier::new(identity_net(3, 4, 4), None, |p| {
        p.mean = Some(Mean::Values(vec![100.0]));
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
    let mut clf =
        Classifier::new(identity_net(3, 4, 4), None, |p| p.crops = Crops::Oversample).unwrap();
    let got = clf.classify(std::slice::from_ref(&sym)).unwrap();
    let mut want = vec![0.0; 48];
    Preprocess::new(3, 4, 4).apply(&sym, &mut want).unwrap();
    assert_close(&got[0], &want, 1e-4);
}

#[test]
fn classifies_photos_with_larger_and_smaller_inputs() {
    let lim = DecodeLimits::default();
    // Colour net with input larger than the 32x32 photo: upscaled.
    let dog = decode_image(&data("caffe/cifar10_quick_v1/dog10.png"), 3, lim).unwrap();
    let chelsea = decode_image(&data("images/chelsea.png"), 3, lim).unwrap();
    let mut clf = Classifier::new(ip_net(3, 48, 40, 5), None, |_| {}).unwrap();
    let out = clf.classify(&[dog.clone(), chelsea.clone()]).unwrap();
    for (im, got) in [&dog, &chelsea].iter().zip(&out) {
        let mut x = vec![0.0; 3 * 48 * 40];
        clf.pre.apply(im, &mut x).unwrap();
        assert_close(got, &reference(&clf.net, &x), 1e-5);
        assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Grey net, input smaller than the photo: resize to 40x40, then oversample 32x32 crops.
    let grey = decode_image(&data("images/coffee.png"), 1, lim).unwrap();
    let mut clf = Classifier::new(ip_net(1, 32, 32, 3), Some("ip"), |p| {
        p.resize = Some((40, 40));
        p.crops = Crops::Oversample;
        p.mean = Some(Mean::Values(vec![128.0]));
        p.scale = 1.0 / 64.0;
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
    let e = err_text(Classifier::new(ip_net(1, 8, 8, 2), Some("prb"), |_| {}));
    assert!(e.contains("did you mean `prob`"), "{e}");
}

#[test]
fn top_k_and_labels() {
    assert_eq!(
        top_k(&[0.1, 0.5, 0.2, 0.5], 3),
        vec![(1, 0.5), (3, 0.5), (2, 0.2)]
    );
    assert_eq!(top_k(&[0.3], 5), vec![(0, 0.3)]);
    let l = parse_labels("n01440764 tench, Tinca tinca\nn02123045 tabby, tabby cat\n\n");
    assert_eq!(l, ["tench, Tinca tinca", "tabby, tabby cat"]);
    assert_eq!(
        parse_labels("airplane\nsea lion\n3: cat\n"),
        ["airplane", "sea lion", "cat"]
    );
    let syn = load_labels(data("labels/synset_words.txt")).unwrap();
    assert_eq!(syn.len(), 1000);
    assert_eq!(syn[281], "tabby, tabby cat");
}

#[test]
fn mean_binaryproto_and_input_lists() {
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

    for f in ["b.png", "a.JPG", "notes.md", "c.txt"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "# images\nb.png 3\n/abs/x y.jpg\n\nsub dir/z.png\n").unwrap();
    let got: Vec<PathBuf> = expand_inputs(&[dir.path().to_path_buf(), list.clone()])
        .into_iter()
        .map(|(p, r)| {
            assert!(r.is_ok());
            p
        })
        .collect();
    let d = dir.path();
    assert_eq!(
        got,
        [
            d.join("a.JPG"),
            d.join("b.png"),
            d.join("b.png"),
            PathBuf::from("/abs/x y.jpg"),
            d.join("sub dir/z.png"),
        ]
    );
    let r = expand_inputs(&[d.join("nolist.txt")]);
    assert!(r[0].1.is_err());
}
