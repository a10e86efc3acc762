//! `ImageData`: a list file of `path label` lines (`image_data_param`: `source`, `root_folder`,
//! `batch_size`, `shuffle`, `new_height`/`new_width`, `is_color`, `rand_skip`), decoded with the
//! `image` crate into Caffe's BGR order, then `transform_param`.

use super::loader::{merged_transform, LoaderLayer};
use super::Layer;
use crate::data::image_list::{Decode, ImageListDataset};
use crate::data::prefetch::{Loader, LoaderConfig};
use crate::data::transform::Transformer;
use crate::proto::LayerParameter;
use crate::{Error, Result};
use std::sync::Arc;

/// Creates `ImageData` from `image_data_param` and `transform_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let d = p
        .image_data_param
        .clone()
        .ok_or_else(|| Error::config("ImageData needs image_data_param { source, batch_size }"))?;
    let (nh, nw) = (d.new_height() as usize, d.new_width() as usize);
    if (nh == 0) != (nw == 0) {
        return Err(Error::config(format!(
            "image_data_param: set both new_height and new_width, or neither (got {nh} and {nw})"
        )));
    }
    let t = merged_transform(p, d.scale, d.mean_file.as_ref(), d.crop_size, d.mirror);
    let tf = Transformer::new(&t, p.phase())?;
    let decode = Decode {
        color: Some(d.is_color()),
        resize: (nh > 0).then_some((nh, nw)),
    };
    let ds = ImageListDataset::open(d.source(), d.root_folder(), decode)?;
    let cfg = LoaderConfig {
        batch_size: d.batch_size() as usize,
        shuffle: d.shuffle(),
        rand_skip: d.rand_skip() as usize,
        prefetch: 4,
    };
    Ok(Box::new(LoaderLayer::new(
        "ImageData",
        Loader::new(Arc::new(ds), tf, cfg)?,
    )))
}

#[cfg(test)]
mod tests {
    use crate::data::image_list::{read_image, Decode};
    use crate::testing::{err_text, layer_param_from_yaml, Harness};

    const ROOT: &str = "../shared/data/images/";

    fn list(dir: &std::path::Path, text: &str) -> String {
        let p = dir.join("list.txt");
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    #[test]
    fn real_photos_resized_colour_and_grey() {
        let dir = tempfile::tempdir().unwrap();
        let l = list(
            dir.path(),
            "chelsea.png 281\ncoffee.png 967\nrocket.jpg 812\n",
        );
        let y = format!(
            "type: ImageData\ntop: [data, label]\nimage_data_param: {{ source: '{l}', \
             root_folder: '{ROOT}', batch_size: 2, new_height: 24, new_width: 32 }}"
        );
        let mut h = Harness::new(&y, vec![]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 3, 24, 32]);
        assert_eq!(h.top[1].data, vec![281.0, 967.0]);
        let want = read_image(
            format!("{ROOT}coffee.png"),
            Decode {
                color: Some(true),
                resize: Some((24, 32)),
            },
        )
        .unwrap();
        assert_eq!(&h.top[0].data[3 * 24 * 32..], &want.data[..]);
        h.forward().unwrap();
        assert_eq!(h.top[1].data, vec![812.0, 281.0], "wraps around");

        let g = y.replace("new_width: 32", "new_width: 32, is_color: false");
        let mut h = Harness::new(&g, vec![]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 1, 24, 32]);
    }

    #[test]
    fn mixed_sizes_without_resize_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let l = list(dir.path(), "chelsea.png 1\ncoffee.png 2\n");
        let y = format!(
            "type: ImageData\ntop: [data, label]\nimage_data_param: {{ source: '{l}', \
             root_folder: '{ROOT}', batch_size: 2 }}"
        );
        let e = err_text(Harness::new(&y, vec![]));
        assert!(e.contains("same batch") && e.contains("new_height"), "{e}");
        let p = layer_param_from_yaml(&y.replace("batch_size: 2", "batch_size: 2, new_height: 5"))
            .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("new_width"));
        let missing = list(dir.path(), "nothere.png 1\n");
        let p = layer_param_from_yaml(&y.replace(&l, &missing)).unwrap();
        let e = err_text(crate::layers::create(&p));
        assert!(e.contains("nothere.png") && e.contains("line 1"), "{e}");
    }
}
