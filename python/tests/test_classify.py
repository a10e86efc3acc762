"""CIFAR-10 photos through Net + Transformer (pycaffe's idiom) and through crema.Classifier
(the library's classify path), against the reference probabilities in expected.json."""

import numpy as np
import pytest

import crema
from conftest import shared

CIFAR = shared("caffe", "cifar10_quick_v1")


@pytest.fixture(scope="module")
def mean():
    m = crema.io.blobproto_to_array((CIFAR / "mean.binaryproto").read_bytes())
    assert m.shape == (1, 3, 32, 32)
    return m[0]


def test_net_and_transformer_match_the_reference(expected, mean):
    ref = expected["cifar10_quick_v1"]
    net = crema.Net(str(CIFAR / "cifar10_quick.prototxt"), str(CIFAR / "cifar10_quick_iter_5000.caffemodel"), crema.TEST)
    t = crema.io.Transformer({"data": net.blobs["data"].shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", mean)
    images = [crema.io.load_image(str(CIFAR / name)) for name in ref["images"]]
    assert images[0].shape == (32, 32, 3) and images[0].dtype == np.float32
    assert 0.0 <= images[0].min() and images[0].max() <= 1.0
    net.blobs["data"].reshape(len(images), 3, 32, 32)
    for i, im in enumerate(images):
        net.blobs["data"].data[i] = t.preprocess("data", im)
    prob = net.forward()["prob"]
    np.testing.assert_allclose(prob, np.array(ref["prob"]), rtol=1e-3, atol=2e-5)
    assert list(prob.argmax(axis=1)) == [5, 5, 9]
    # deprocess undoes preprocess.
    back = t.deprocess("data", t.preprocess("data", images[0]))
    np.testing.assert_allclose(back, images[0], atol=1e-5)


def test_classifier_shares_the_rust_path(expected, mean):
    ref = expected["cifar10_quick_v1"]
    clf = crema.Classifier(
        str(CIFAR / "cifar10_quick.prototxt"),
        str(CIFAR / "cifar10_quick_iter_5000.caffemodel"),
        mean=mean,
        raw_scale=255.0,
        channel_swap=(2, 1, 0),
    )
    images = [crema.io.load_image(str(CIFAR / name)) for name in ref["images"]]
    center = clf.predict(images, oversample=False)
    assert center.shape == (3, 10)
    np.testing.assert_allclose(center, np.array(ref["prob"]), rtol=1e-3, atol=2e-5)
    # Oversampling from a larger resize averages 10 crops: still a distribution, same winners.
    clf2 = crema.Classifier(
        str(CIFAR / "cifar10_quick.prototxt"),
        str(CIFAR / "cifar10_quick_iter_5000.caffemodel"),
        image_dims=(36, 36),
        mean=mean.mean(axis=(1, 2)),
        raw_scale=255.0,
        channel_swap=(2, 1, 0),
    )
    over = clf2.predict(images)
    np.testing.assert_allclose(over.sum(axis=1), np.ones(3), rtol=1e-5)
    assert list(over.argmax(axis=1))[2] == 9


def test_blobproto_round_trip_and_errors():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.5
    data = crema.io.array_to_blobproto(a)
    assert isinstance(data, bytes)
    np.testing.assert_array_equal(crema.io.blobproto_to_array(data), a)
    with pytest.raises(crema.CremaError, match="blobproto"):
        crema.io.blobproto_to_array(b"\x0a\xff\xff")
    with pytest.raises(crema.CremaError):
        crema.io.load_image(str(CIFAR / "mean.binaryproto"))


def test_resize_and_grey():
    im = crema.io.load_image(str(CIFAR / "cat10.png"), color=False)
    assert im.shape == (32, 32, 1)
    big = crema.io.resize_image(im, (64, 48))
    assert big.shape == (64, 48, 1)
    assert abs(big.mean() - im.mean()) < 0.02
