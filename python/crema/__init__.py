"""crema from Python, with pycaffe's habits.

    import crema
    net = crema.Net("deploy.prototxt", "weights.caffemodel", crema.TEST)
    net.blobs["data"].data[...] = x          # numpy views over crema's memory
    out = net.forward()
    solver = crema.Solver("solver.yaml"); solver.step(100)
"""

from . import _crema
from ._crema import (
    TRAIN,
    TEST,
    Blob,
    Classifier,
    CremaError,
    LayerInfo,
    Net,
    Solver,
    layer_types,
    model_to_yaml,
    set_random_seed,
)
from . import io
from .net_spec import NetSpec, layers, params, to_yaml

# pycaffe's names.
get_solver = Solver
SGDSolver = Solver
NesterovSolver = Solver
AdaGradSolver = Solver
RMSPropSolver = Solver
AdaDeltaSolver = Solver
AdamSolver = Solver


class Layer:
    """Base of `type: Python` layers (pycaffe's `caffe.Layer`).

    The net creates the class named by `python_param { module, layer }` with no arguments and
    sets `self.param_str`, `self.phase` and `self.name`. `setup(bottom, top)` runs once, when the
    net is built; `reshape(bottom, top)` before every forward; `forward(bottom, top)` writes
    `top[i].data`; `backward(top, propagate_down, bottom)` writes `bottom[i].diff`. The blobs
    are lent for the call: keep numbers, not the blobs or their arrays.
    """

    param_str = ""
    phase = TEST
    name = ""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


__all__ = [
    "TRAIN", "TEST", "Blob", "Classifier", "CremaError", "Layer", "LayerInfo", "Net",
    "NetSpec", "Solver", "get_solver", "io", "layers", "params", "layer_types",
    "model_to_yaml", "set_random_seed", "to_yaml",
]
