"""crema.NetSpec writes the YAML of a net built from layer calls, pycaffe-style."""

import crema
from crema import layers as L
from crema import params as P
from conftest import shared


def lenet_spec(batch):
    n = crema.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 1, 28, 28]))
    conv = dict(param=[dict(lr_mult=1), dict(lr_mult=2)], weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"))
    n.conv1 = L.Convolution(n.data, num_output=20, kernel_size=5, stride=1, **conv)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=50, kernel_size=5, stride=1, **conv)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, **conv)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, **conv)
    n.prob = L.Softmax(n.ip2)
    return n.to_proto(name="LeNet")


def test_netspec_lenet_equals_caffes_hand_written_prototxt(tmp_path):
    yaml = lenet_spec(64)
    path = tmp_path / "lenet.yaml"
    path.write_text(yaml)
    hand = shared("caffe", "lenet_v2", "lenet.prototxt")
    assert crema.model_to_yaml(str(path)) == crema.model_to_yaml(str(hand))
    net = crema.Net(str(path), str(shared("caffe", "lenet_v2", "lenet_iter_10000.caffemodel")))
    assert net.blobs["prob"].shape == [64, 10]


def test_netspec_names_ntop_and_layer_fields(tmp_path):
    n = crema.NetSpec()
    n.data, n.label = L.MemoryData(batch_size=4, channels=1, height=2, width=2, ntop=2)
    n.ip = L.InnerProduct(n.data, num_output=3, loss_weight=0, include=dict(phase="TRAIN"))
    n.loss = L.SoftmaxWithLoss(n.ip, n.label, loss_param=dict(ignore_label=-1))
    text = n.to_proto()
    assert "name: data\n    type: MemoryData\n    top: [data, label]" in text
    assert "memory_data_param: { batch_size: 4, channels: 1, height: 2, width: 2 }" in text
    assert "include: { phase: TRAIN }" in text
    path = tmp_path / "n.yaml"
    path.write_text(text)
    net = crema.Net(str(path), phase=crema.TRAIN)
    assert net.inputs == [] and net.layers[1].type == "InnerProduct"
