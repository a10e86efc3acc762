use super::*;
use crate::testing::{assert_close, err_text};

use crate::testing::{image_from_fn as img, shared_data as data};

const COLOR: Option<bool> = Some(true);
const GREY: Option<bool> = Some(false);

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
fn planes_reorder_channels() {
    // 1x2 RGB image: pixel 0 = (10, 20, 30), pixel 1 = (40, 50, 60).
    let im = img(1, 2, 3, |_, x, c| (10 * (x * 3 + c + 1)) as u8);
    assert_eq!(
        im.planes(1, 2, &[2, 1, 0]),
        [30.0, 60.0, 20.0, 50.0, 10.0, 40.0]
    );
    assert_eq!(
        im.planes(1, 2, &[0, 1, 2]),
        [10.0, 40.0, 20.0, 50.0, 30.0, 60.0]
    );
    // Resized to 1x4 (OpenCV geometry), then planes.
    assert_close(&im.planes(1, 4, &[0]), &[10.0, 17.5, 32.5, 40.0], 1e-5);
}

#[test]
fn decodes_real_photos_in_colour_and_grey() {
    let lim = DecodeLimits::default();
    let chelsea = read(data("images/chelsea.png"), COLOR, lim).unwrap();
    assert_eq!(
        (chelsea.height, chelsea.width, chelsea.channels),
        (300, 451, 3)
    );
    let raw = image::open(data("images/chelsea.png")).unwrap().to_rgb8();
    assert_eq!(chelsea.data, raw.into_raw(), "RGB, interleaved");
    let grey = read(data("images/chelsea.png"), GREY, lim).unwrap();
    assert_eq!((grey.height, grey.width, grey.channels), (300, 451, 1));
    // Grey = BT.601 luma of the colour pixels, with OpenCV's fixed-point weights.
    for i in [0, 1000, 77777] {
        let p = &chelsea.data[i * 3..i * 3 + 3];
        let l = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        assert!(
            (grey.data[i] as f32 - l).abs() <= 0.51,
            "{} vs {l}",
            grey.data[i]
        );
        let fixed = (p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + 8192) >> 14;
        assert_eq!(grey.data[i] as u32, fixed);
    }
    // As stored: colour stays colour.
    assert_eq!(
        read(data("images/chelsea.png"), None, lim).unwrap(),
        chelsea
    );
    let rocket = read(data("images/rocket.jpg"), COLOR, lim).unwrap();
    assert_eq!((rocket.height, rocket.width), (427, 640));
    // The CIFAR PNGs carry alpha: it is dropped.
    let dog = read(data("caffe/cifar10_quick_v1/dog10.png"), COLOR, lim).unwrap();
    assert_eq!((dog.height, dog.width, dog.channels), (32, 32, 3));
}

#[test]
fn decodes_every_supported_format() {
    let lim = DecodeLimits::default();
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
        let im = read(&p, COLOR, lim).unwrap();
        assert_eq!((im.height, im.width), (5, 7), "{ext}");
        if ext != "gif" {
            // Lossless formats give the pixels back (GIF quantises its palette).
            assert_eq!(im.data, rgb.as_raw().clone(), "{ext}");
        }
    }
    // JPEG (lossy): close to the original.
    let p = dir.path().join("x.jpg");
    rgb.save_with_format(&p, image::ImageFormat::Jpeg).unwrap();
    let im = read(&p, COLOR, lim).unwrap();
    assert_eq!((im.height, im.width), (5, 7));
    // A grey image replicated to colour, or kept grey as stored.
    let p = dir.path().join("g.png");
    image::GrayImage::from_fn(3, 2, |x, _| image::Luma([x as u8 * 50]))
        .save(&p)
        .unwrap();
    let im = read(&p, COLOR, lim).unwrap();
    assert_eq!(im.data[..6], [0, 0, 0, 50, 50, 50]);
    assert_eq!(read(&p, None, lim).unwrap().channels, 1);
    // The contents decide, not the extension: a PNG named .jpg reads fine.
    let p2 = dir.path().join("png-named.jpg");
    std::fs::copy(&p, &p2).unwrap();
    assert!(read(&p2, GREY, lim).is_ok());
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
fn png_header(w: u32, h: u32) -> Vec<u8> {
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
    let missing = err_text(read(dir.path().join("nope.png"), COLOR, lim));
    assert!(
        missing.contains("nope.png") && missing.contains("No such file"),
        "{missing}"
    );
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "this is not a picture\n").unwrap();
    let e = err_text(read(&text, COLOR, lim));
    assert!(e.contains("notes.jpg") && e.contains("decode"), "{e}");
    let text = dir.path().join("notes.md");
    std::fs::write(&text, "this is not a picture\n").unwrap();
    let e = err_text(read(&text, COLOR, lim));
    assert!(e.contains("notes.md") && e.contains("not an image"), "{e}");
    let full = std::fs::read(data("images/chelsea.png")).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let e = err_text(read(&cut, COLOR, lim));
    assert!(e.contains("cut.png") && e.contains("decode"), "{e}");
    // A JPEG cut after its last scan started: refused, not filled with grey.
    let full = std::fs::read(data("images/rocket.jpg")).unwrap();
    let e = err_text(decode(&full[..full.len() - 100], COLOR, lim, "cut.jpg"));
    assert!(e.contains("cut.jpg") && e.contains("truncated JPEG"), "{e}");
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, png_header(100_000, 100_000)).unwrap();
    let e = err_text(read(&bomb, COLOR, lim));
    assert!(e.contains("bomb.png") && e.contains("too large"), "{e}");
    // Within the side limit but over the memory limit: also refused before allocating.
    std::fs::write(&bomb, png_header(16000, 16000)).unwrap();
    let e = err_text(read(&bomb, COLOR, lim));
    assert!(e.contains("too large"), "{e}");
    // A file over the memory limit is not even read.
    let small = DecodeLimits {
        max_side: 100,
        max_alloc: 1000,
    };
    let e = err_text(read(data("images/chelsea.png"), COLOR, small));
    assert!(e.contains("chelsea.png") && e.contains("bytes"), "{e}");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert!(read(&empty, COLOR, lim).is_err());
}
