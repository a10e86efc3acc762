"""crema.Net: loading, numpy views over crema's memory, forward/backward, errors."""

import numpy as np
import pytest

import crema
from conftest import mnist_digits, shared

LENET = shared("caffe", "lenet_v2", "lenet.prototxt")
LENET_W = shared("caffe", "lenet_v2", "lenet_iter_10000.caffemodel")


@pytest.fixture
def lenet():
    return crema.Net(str(LENET), str(LENET_W), crema.TEST)


def test_lenet_matches_the_reference_probabilities(lenet, expected):
    x, _ = mnist_digits(3)
    lenet.blobs["data"].reshape(3, 1, 28, 28)
    lenet.blobs["data"].data[...] = x
    out = lenet.forward()
    assert list(out) == ["prob"]
    for i in range(3):
        np.testing.assert_allclose(out["prob"][i], expected["lenet_v2"]["prob"][str(i)], rtol=1e-4, atol=1e-6)


def test_pycaffe_accessors(lenet):
    assert lenet.inputs == ["data"]
    assert lenet.outputs == ["prob"]
    assert list(lenet.blobs) == ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob"]
    assert list(lenet.params) == ["conv1", "conv2", "ip1", "ip2"]
    assert [p.shape for p in lenet.params["conv1"]] == [[20, 1, 5, 5], [20]]
    d = lenet.blobs["data"]
    assert (d.num, d.channels, d.height, d.width, d.count) == (64, 1, 28, 28, 64 * 784)
    assert [(l.name, l.type) for l in lenet.layers][:2] == [("data", "Input"), ("conv1", "Convolution")]
    assert lenet.layers[1].blobs[0].shape == [20, 1, 5, 5]
    assert lenet._layer_names[-1] == "prob"


def test_writes_through_views_reach_the_forward_pass(lenet):
    x, _ = mnist_digits(1)
    lenet.blobs["data"].reshape(1, 1, 28, 28)
    data = lenet.blobs["data"].data
    data[...] = x  # the view aliases crema's blob
    w = lenet.params["ip2"][0].data
    b = lenet.params["ip2"][1].data
    w[...] = 0.0
    b[...] = np.arange(10, dtype=np.float32)
    prob = lenet.forward()["prob"][0]
    want = np.exp(np.arange(10.0)) / np.exp(np.arange(10.0)).sum()
    np.testing.assert_allclose(prob, want, rtol=1e-5)
    # And the same memory reads back.
    assert lenet.params["ip2"][1].data[3] == 3.0
    assert np.shares_memory(lenet.params["ip2"][0].data, lenet.params["ip2"][0].data)


def test_forward_kwargs_start_end_and_extra_blobs(lenet):
    x, _ = mnist_digits(2)
    full = lenet.forward(data=x, blobs=["ip1"])
    assert set(full) == {"prob", "ip1"}
    assert full["ip1"].shape == (2, 500)
    ip1 = full["ip1"].copy()
    part = lenet.forward(end="ip1")  # stops before relu1, which runs in place on ip1
    assert list(part) == ["ip1"]
    assert (part["ip1"] < 0).any()
    np.testing.assert_array_equal(np.maximum(part["ip1"], 0), ip1)
    tail = lenet.forward(start="ip2")
    np.testing.assert_allclose(tail["prob"], full["prob"], rtol=1e-6)


def test_backward_from_top_diffs_is_the_linear_map(tmp_path):
    # As in Caffe, a net without a loss computes gradients only with force_backward.
    model = tmp_path / "lenet_fb.prototxt"
    model.write_text(LENET.read_text() + "\nforce_backward: true\n")
    lenet = crema.Net(str(model), str(LENET_W), crema.TEST)
    # d(sum(g * ip2))/d(ip1) through InnerProduct is g @ W.
    x, _ = mnist_digits(1)
    lenet.forward(data=x)
    g = np.random.default_rng(0).standard_normal((1, 10)).astype(np.float32)
    lenet.backward(ip2=g, start="ip2", end="ip2")
    w = lenet.params["ip2"][0].data
    np.testing.assert_allclose(lenet.blobs["ip1"].diff, g @ w, rtol=1e-4, atol=1e-6)
    out = lenet.backward(prob=np.ones((1, 10), np.float32))
    assert out["data"].shape == (1, 1, 28, 28)
    # The softmax outputs sum to 1 whatever the input: that gradient vanishes.
    assert np.abs(out["data"]).max() < 1e-5
    g2 = lenet.backward(ip2=g)["data"]
    assert np.abs(g2).max() > 1e-3


def test_reshape_propagates_shapes(lenet):
    lenet.blobs["data"].reshape(5, 1, 28, 28)
    lenet.reshape()
    assert lenet.blobs["prob"].shape == [5, 10]


def test_save_and_load_round_trip(lenet, tmp_path):
    lenet.params["ip2"][1].data[...] = 7.0
    path = tmp_path / "w.caffemodel"
    lenet.save(str(path))
    other = crema.Net(str(LENET), str(path), crema.TEST)
    np.testing.assert_array_equal(other.params["ip2"][1].data, np.full(10, 7.0, np.float32))


def test_errors_are_python_exceptions(tmp_path):
    with pytest.raises(crema.CremaError, match="nowhere.prototxt"):
        crema.Net(str(tmp_path / "nowhere.prototxt"), crema.TEST)
    bad = tmp_path / "bad.yaml"
    bad.write_text("layer:\n  - name: ip\n    type: InnerProdcut\n")
    with pytest.raises(crema.CremaError, match="did you mean `InnerProduct`"):
        crema.Net(str(bad))
    broken = tmp_path / "broken.caffemodel"
    broken.write_bytes(b"\xff\xff\xff not a caffemodel")
    with pytest.raises(crema.CremaError, match="broken.caffemodel"):
        crema.Net(str(LENET), str(broken), crema.TEST)
    net = crema.Net(str(LENET), phase=crema.TEST)
    with pytest.raises(KeyError):
        net.forward(end="nope")
    with pytest.raises(ValueError):
        net.blobs["data"].data = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError):
        crema.Net(str(LENET), phase=7)
