"""`type: Python` layers: pycaffe's numpy Euclidean loss trains a small net fed from numpy and
passes the gradient check; its exceptions come back as themselves."""

import sys
import textwrap

import numpy as np
import pytest

import crema

PYLOSS = textwrap.dedent(
    """
    import numpy as np
    import crema

    class EuclideanLossLayer(crema.Layer):
        # pycaffe's examples/pycaffe/layers/pyloss.py, with the top's diff as loss weight.
        def setup(self, bottom, top):
            if len(bottom) != 2:
                raise Exception("Need two inputs to compute distance.")
            self.scale = float(self.param_str or 1.0)

        def reshape(self, bottom, top):
            if bottom[0].count != bottom[1].count:
                raise ValueError("Inputs must have the same dimension.")
            self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
            top[0].reshape(1)

        def forward(self, bottom, top):
            self.diff[...] = bottom[0].data - bottom[1].data
            top[0].data[0] = self.scale * np.sum(self.diff ** 2) / bottom[0].num / 2.0

        def backward(self, top, propagate_down, bottom):
            for i in range(2):
                if not propagate_down[i]:
                    continue
                sign = 1 if i == 0 else -1
                bottom[i].diff[...] = self.scale * top[0].diff[0] * sign * self.diff / bottom[i].num

    class Broken(crema.Layer):
        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].shape)

        def forward(self, bottom, top):
            raise ZeroDivisionError("on purpose")
    """
)


def net_yaml(loss_type, extra=""):
    return textwrap.dedent(
        f"""
        name: regress
        force_backward: true
        layer:
          - {{ name: x, type: Input, top: x, input_param: {{ shape: {{ dim: [16, 4] }} }} }}
          - {{ name: y, type: Input, top: y, input_param: {{ shape: {{ dim: [16, 2] }} }} }}
          - name: ip
            type: InnerProduct
            bottom: x
            top: ip
            inner_product_param: {{ num_output: 2, weight_filler: {{ type: gaussian, std: 0.1 }} }}
          - name: loss
            type: {loss_type}
            bottom: [ip, y]
            top: loss
            loss_weight: 1
        {extra}
        """
    )


PY_LOSS = "Python\n            python_param: { module: pyloss, layer: EuclideanLossLayer, param_str: '1.0' }"


@pytest.fixture
def pyloss(tmp_path, monkeypatch):
    (tmp_path / "pyloss.py").write_text(PYLOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("pyloss", None)


def batch(rng):
    x = rng.standard_normal((16, 4)).astype(np.float32)
    a = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, -1.0, 2.0]], np.float32)
    return x, x @ a.T + np.array([0.5, -1.0], np.float32)


def test_python_loss_equals_the_builtin_and_passes_the_gradient_check(pyloss):
    (pyloss / "py.yaml").write_text(net_yaml(PY_LOSS))
    (pyloss / "builtin.yaml").write_text(net_yaml("EuclideanLoss"))
    crema.set_random_seed(3)
    py = crema.Net(str(pyloss / "py.yaml"), phase=crema.TRAIN)
    crema.set_random_seed(3)
    builtin = crema.Net(str(pyloss / "builtin.yaml"), phase=crema.TRAIN)
    x, y = batch(np.random.default_rng(0))
    lp = py.forward(x=x, y=y)["loss"].copy()
    lb = builtin.forward(x=x, y=y)["loss"].copy()
    np.testing.assert_allclose(lp, lb, rtol=1e-5)
    py.backward()
    builtin.backward()
    np.testing.assert_allclose(py.blobs["ip"].diff, builtin.blobs["ip"].diff, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(py.params["ip"][0].diff, builtin.params["ip"][0].diff, rtol=1e-5, atol=1e-7)
    reports = dict((r[0], r[1:]) for r in py.check_gradients())
    max_err, checked, failures = reports["loss"]
    assert checked == 2 * 16 * 2 and not failures and max_err < 1e-2, reports["loss"]


def test_python_loss_trains_a_net_fed_from_numpy(pyloss):
    (pyloss / "net.yaml").write_text(net_yaml(PY_LOSS))
    (pyloss / "solver.yaml").write_text(
        "net: net.yaml\nbase_lr: 0.05\nmomentum: 0.9\nlr_policy: fixed\nmax_iter: 200\n"
        "display: 0\nsnapshot_after_train: false\nrandom_seed: 2\n"
    )
    s = crema.Solver(str(pyloss / "solver.yaml"))
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(150):
        x, y = batch(rng)
        net = s.net
        net.blobs["x"].data[...] = x
        net.blobs["y"].data[...] = y
        s.step(1)
        losses.append(float(net.blobs["loss"].data[0]))
    assert losses[0] > 1.0, losses[0]
    assert np.mean(losses[-10:]) < 0.01 * losses[0], (losses[0], losses[-10:])


def test_python_exceptions_come_back_as_themselves(pyloss):
    (pyloss / "broken.yaml").write_text(
        textwrap.dedent(
            """
            layer:
              - { name: x, type: Input, top: x, input_param: { shape: { dim: [2, 3] } } }
              - { name: b, type: Python, bottom: x, top: b, python_param: { module: pyloss, layer: Broken } }
            """
        )
    )
    net = crema.Net(str(pyloss / "broken.yaml"))
    with pytest.raises(ZeroDivisionError, match="on purpose"):
        net.forward()
    (pyloss / "missing.yaml").write_text(
        "layer:\n  - { name: p, type: Python, python_param: { module: pyloss, layer: Nope } }\n"
    )
    with pytest.raises(AttributeError):
        crema.Net(str(pyloss / "missing.yaml"))
