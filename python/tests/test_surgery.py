"""pycaffe's net surgery: copy weights between nets, and cast InnerProduct layers into
convolutions (Caffe's examples/net_surgery) so LeNet slides over a larger image."""

import numpy as np

import crema
from conftest import mnist_digits, shared

LENET = shared("caffe", "lenet_v2", "lenet.prototxt")
LENET_W = shared("caffe", "lenet_v2", "lenet_iter_10000.caffemodel")

FULL_CONV = """
name: LeNetFullConv
layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [1, 1, 36, 36] } } }
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    convolution_param: { num_output: 20, kernel_size: 5 }
  - { name: pool1, type: Pooling, bottom: conv1, top: pool1, pooling_param: { pool: MAX, kernel_size: 2, stride: 2 } }
  - name: conv2
    type: Convolution
    bottom: pool1
    top: conv2
    convolution_param: { num_output: 50, kernel_size: 5 }
  - { name: pool2, type: Pooling, bottom: conv2, top: pool2, pooling_param: { pool: MAX, kernel_size: 2, stride: 2 } }
  - { name: ip1-conv, type: Convolution, bottom: pool2, top: ip1-conv, convolution_param: { num_output: 500, kernel_size: 4 } }
  - { name: relu1, type: ReLU, bottom: ip1-conv, top: ip1-conv }
  - { name: ip2-conv, type: Convolution, bottom: ip1-conv, top: ip2-conv, convolution_param: { num_output: 10, kernel_size: 1 } }
  - { name: prob, type: Softmax, bottom: ip2-conv, top: prob }
"""


def test_copy_weights_between_nets():
    trained = crema.Net(str(LENET), str(LENET_W), crema.TEST)
    crema.set_random_seed(5)
    fresh = crema.Net(str(LENET), phase=crema.TEST)
    x, _ = mnist_digits(4)
    want = trained.forward(data=x)["prob"].copy()
    assert not np.allclose(fresh.forward(data=x)["prob"], want, atol=1e-3)
    for name, blobs in trained.params.items():
        for dst, src in zip(fresh.params[name], blobs):
            dst.data[...] = src.data
    np.testing.assert_allclose(fresh.forward(data=x)["prob"], want, rtol=1e-6)


def test_inner_product_cast_into_convolution(tmp_path):
    net = crema.Net(str(LENET), str(LENET_W), crema.TEST)
    model = tmp_path / "full_conv.yaml"
    model.write_text(FULL_CONV)
    full = crema.Net(str(model), phase=crema.TEST)
    for layer in ["conv1", "conv2"]:
        for dst, src in zip(full.params[layer], net.params[layer]):
            dst.data[...] = src.data
    for ip, conv in [("ip1", "ip1-conv"), ("ip2", "ip2-conv")]:
        w, b = full.params[conv]
        assert w.count == net.params[ip][0].count
        w.data.flat = net.params[ip][0].data.flat  # Caffe's example, line for line
        b.data[...] = net.params[ip][1].data
    # A 36x36 canvas holding digits: the 3x3 output map (stride 4) classifies each 28x28 window.
    digits, _ = mnist_digits(2)
    canvas = np.zeros((1, 1, 36, 36), np.float32)
    canvas[0, 0, :28, :28] = digits[0, 0]
    out = full.forward(data=canvas)["prob"]
    assert out.shape == (1, 10, 3, 3)
    windows = np.stack([canvas[0, :, 4 * i:4 * i + 28, 4 * j:4 * j + 28] for i in range(3) for j in range(3)])
    ref = net.forward(data=windows)["prob"]
    np.testing.assert_allclose(out[0].reshape(10, 9).T, ref, rtol=1e-4, atol=1e-6)
    assert out[0, :, 0, 0].argmax() == 7  # the first test digit is a 7
