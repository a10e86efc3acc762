"""pycaffe's `caffe.io`: images, the input `Transformer`, and BlobProto bytes.

Images are decoded and resized by crema's own image path (the one `ImageData` and `crema
classify` use); BlobProto bytes go through crema's one BlobProto reader.
"""

import numpy as np

from ._crema import array_to_blobproto as _array_to_blobproto
from ._crema import blobproto_to_array as _blobproto_to_array
from ._crema import load_image, resize_image

__all__ = [
    "load_image", "resize_image", "blobproto_to_array", "array_to_blobproto", "Transformer",
    "oversample",
]


def blobproto_to_array(data):
    """The array held by a `.binaryproto` (pass the file's bytes, or a path)."""
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read()
    return _blobproto_to_array(bytes(data))


def array_to_blobproto(arr):
    """The bytes of a `.binaryproto` holding `arr` (write them to a file)."""
    return _array_to_blobproto(np.ascontiguousarray(arr, dtype=np.float32))


def oversample(images, crop_dims):
    """Caffe's 10 crops (corners, centre, mirrored) of each `H x W x K` image."""
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    im_center = im_shape[:2] / 2.0
    h_idx = (0, im_shape[0] - crop_dims[0])
    w_idx = (0, im_shape[1] - crop_dims[1])
    crops_ix = [(i, j, i + crop_dims[0], j + crop_dims[1]) for i in h_idx for j in w_idx]
    c = np.tile(im_center, (1, 2)) + np.concatenate([-crop_dims / 2.0, crop_dims / 2.0])
    crops_ix.append(tuple(c.astype(int)[0]))
    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1], im_shape[-1]), np.float32)
    ix = 0
    for im in images:
        for a, b, c2, d in crops_ix:
            crops[ix] = im[a:c2, b:d, :]
            ix += 1
        crops[ix - 5:ix] = crops[ix - 5:ix, :, ::-1, :]
    # Caffe's order: the five crops, then the five mirrored.
    return crops


class Transformer:
    """pycaffe's input preprocessing for one or more inputs.

    `Transformer({"data": net.blobs["data"].shape})`; then `set_transpose("data", (2, 0, 1))`,
    `set_channel_swap("data", (2, 1, 0))`, `set_raw_scale("data", 255)`,
    `set_mean("data", mean)`, `set_input_scale("data", s)`; `preprocess("data", image)` gives
    the `C x H x W` input, `deprocess` inverts it.
    """

    def __init__(self, inputs):
        self.inputs = {k: tuple(v) for k, v in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check_input(self, name):
        if name not in self.inputs:
            raise KeyError(f"{name} is not one of the net inputs: {list(self.inputs)}")

    def set_transpose(self, name, order):
        self._check_input(name)
        if len(order) != len(self.inputs[name]) - 1:
            raise ValueError("transpose order needs the same number of dimensions as the input")
        self.transpose[name] = order

    def set_channel_swap(self, name, order):
        self._check_input(name)
        if len(order) != self.inputs[name][1]:
            raise ValueError("channel swap needs the same number of dimensions as the input channels")
        self.channel_swap[name] = order

    def set_raw_scale(self, name, scale):
        self._check_input(name)
        self.raw_scale[name] = scale

    def set_mean(self, name, mean):
        """`mean`: one value per channel, or a `C x H x W` image."""
        self._check_input(name)
        mean = np.asarray(mean, dtype=np.float32)
        ms = mean.shape
        if mean.ndim == 1:
            if ms[0] != self.inputs[name][1]:
                raise ValueError("the mean needs one value per input channel")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise ValueError("the mean must be a vector or a C x H x W image")
            if ms != self.inputs[name][1:]:
                raise ValueError(f"the mean shape {ms} differs from the input shape {self.inputs[name][1:]}")
        self.mean[name] = mean

    def set_input_scale(self, name, scale):
        self._check_input(name)
        self.input_scale[name] = scale

    def preprocess(self, name, data):
        """`H x W x K` image (`0..1`) -> net input `K x H x W` (resized to the input size)."""
        self._check_input(name)
        caffe_in = np.asarray(data, dtype=np.float32)
        in_dims = self.inputs[name][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if name in self.transpose:
            caffe_in = caffe_in.transpose(self.transpose[name])
        if name in self.channel_swap:
            caffe_in = caffe_in[list(self.channel_swap[name]), :, :]
        if name in self.raw_scale:
            caffe_in = caffe_in * self.raw_scale[name]
        if name in self.mean:
            caffe_in = caffe_in - self.mean[name]
        if name in self.input_scale:
            caffe_in = caffe_in * self.input_scale[name]
        return np.ascontiguousarray(caffe_in, dtype=np.float32)

    def deprocess(self, name, data):
        """Net input -> image, undoing `preprocess` (except the resize)."""
        self._check_input(name)
        decaf_in = np.array(data, dtype=np.float32).squeeze()
        if name in self.input_scale:
            decaf_in = decaf_in / self.input_scale[name]
        if name in self.mean:
            decaf_in = decaf_in + self.mean[name]
        if name in self.raw_scale:
            decaf_in = decaf_in / self.raw_scale[name]
        if name in self.channel_swap:
            decaf_in = decaf_in[np.argsort(self.channel_swap[name]), :, :]
        if name in self.transpose:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[name]))
        return decaf_in
