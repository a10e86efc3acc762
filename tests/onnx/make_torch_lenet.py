"""Writes tests/onnx/torch_lenet.onnx: a LeNet-shaped net (reduced widths) exported by PyTorch's
ONNX exporter, for crema's import test (tests/onnx.rs). Run once where torch is installed:

    python tests/onnx/make_torch_lenet.py

CI does not run this; the .onnx file is committed.
"""
import os

import torch
from torch import nn


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.fc2(x), dim=1)


def main():
    torch.manual_seed(0)
    net = LeNet().eval()
    x = torch.randn(2, 1, 28, 28)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_lenet.onnx")
    torch.onnx.export(
        net,
        (x,),
        out,
        input_names=["data"],
        output_names=["prob"],
        dynamic_axes={"data": {0: "N"}, "prob": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
