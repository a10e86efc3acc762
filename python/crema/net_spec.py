"""pycaffe's `caffe.net_spec` writing crema YAML.

    from crema import layers as L, params as P
    n = crema.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[64, 1, 28, 28]), dict(dim=[64])], ntop=2)
    n.ip1 = L.InnerProduct(n.data, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.pool = L.Pooling(n.ip1, pool=P.Pooling.MAX, kernel_size=2)
    n.loss = L.SoftmaxWithLoss(n.ip1, n.label)
    open("net.yaml", "w").write(n.to_proto())

Keyword arguments that are fields of `LayerParameter` (`param`, `loss_weight`, `include`,
`exclude`, `propagate_down`, `phase`, `transform_param`, `loss_param`, any `*_param`) are set on
the layer; the others go into the layer type's own parameter message
(`InnerProduct` -> `inner_product_param`), found from caffe.proto as pycaffe does.
"""

import json
import re
from collections import OrderedDict

from . import _crema

_TYPE_FIELD = dict(_crema.layer_param_fields())
_LAYER_FIELDS = {
    "loss_weight", "param", "propagate_down", "include", "exclude", "phase", "blobs",
}


class Top:
    """One output of a layer function."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        return to_proto(self)


class Function:
    """A layer call: its type, input tops and parameters."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for i in inputs:
            if not isinstance(i, Top):
                raise TypeError(f"{type_name} input {i!r} is not a Top (an output of a layer)")
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.name = self.params.pop("name", None)
        if self.in_place and len(inputs) != 1:
            raise ValueError("in_place needs exactly one input")
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _to_layer(self, names, autonames, layers):
        if self in layers:
            return
        bottoms = []
        for inp in self.inputs:
            inp.fn._to_layer(names, autonames, layers)
            bottoms.append(self._top_name(inp, names, autonames))
        layer = OrderedDict()
        if self.in_place:
            tops = [bottoms[0]]
            names.setdefault(self.tops[0], bottoms[0])
        else:
            tops = [self._top_name(t, names, autonames) for t in self.tops]
        if self.name is not None:
            layer["name"] = self.name
        elif self.in_place:
            # pycaffe names an in-place layer after the attribute it was assigned to.
            layer["name"] = self._assigned or tops[0]
        else:
            layer["name"] = tops[0] if tops else f"{self.type_name}{id(self)}"
        layer["type"] = self.type_name
        if bottoms:
            layer["bottom"] = bottoms
        if tops:
            layer["top"] = tops
        own = OrderedDict()
        for k, v in self.params.items():
            if k in _LAYER_FIELDS or k.endswith("_param"):
                layer[k] = v
            else:
                own[k] = v
        if own:
            field = _TYPE_FIELD.get(self.type_name)
            if field is None:
                raise ValueError(
                    f"{self.type_name} has no parameter message for {list(own)}; pass them "
                    f"as an explicit `*_param=dict(...)`"
                )
            layer.setdefault(field, OrderedDict()).update(own)
        layers[self] = layer

    _assigned = None


class NetSpec:
    """Tops assigned as attributes take the attribute's name."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        if isinstance(value, Top) and value.fn.in_place:
            value.fn._assigned = name
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name)

    __setitem__ = __setattr__
    __getitem__ = __getattr__

    def to_proto(self, name=None, **net_fields):
        """The net as crema YAML (a string); `name` and other NetParameter fields optional."""
        names = {v: k for k, v in self.tops.items() if not v.fn.in_place}
        autonames = _Counter()
        layers = OrderedDict()
        for top in self.tops.values():
            top.fn._to_layer(names, autonames, layers)
        net = OrderedDict()
        if name is not None:
            net["name"] = name
        net.update(net_fields)
        net["layer"] = list(layers.values())
        return to_yaml(net)


class _Counter(dict):
    def __missing__(self, key):
        return 0


def to_proto(*tops):
    """YAML of the net that produces `tops` (pycaffe's `caffe.to_proto`)."""
    n = NetSpec()
    for i, t in enumerate(tops):
        n.tops[f"{t.fn.type_name}{i + 1}" if len(tops) > 1 else "out"] = t
    return n.to_proto()


class Layers:
    """`layers.InnerProduct(bottom, num_output=10)` makes a layer call of that type."""

    def __getattr__(self, type_name):
        def layer_fn(*args, **kwargs):
            fn = Function(type_name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        return layer_fn


class Params:
    """`params.Pooling.MAX` is the enum value's name, as the YAML writes it."""

    def __getattr__(self, name):
        class Enum:
            def __getattr__(self, value):
                return value

        return Enum()


layers = Layers()
params = Params()

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if hasattr(v, "item"):
        return _scalar(v.item())
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)


def _is_scalar(v):
    return not isinstance(v, (dict, list, tuple))


def _flow(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _emit(v, indent, out):
    pad = "  " * indent
    for k, x in v.items():
        if isinstance(x, dict):
            if all(_is_scalar(y) for y in x.values()) and len(x) <= 4:
                out.append(f"{pad}{k}: {_flow(x)}")
            else:
                out.append(f"{pad}{k}:")
                _emit(x, indent + 1, out)
        elif isinstance(x, (list, tuple)) and x and all(isinstance(y, dict) for y in x) and any(
            not all(_is_scalar(z) for z in y.values()) or len(y) > 4 for y in x
        ):
            out.append(f"{pad}{k}:")
            for y in x:
                sub = []
                _emit(y, indent + 2, sub)
                first = sub[0].lstrip()
                out.append(f"{pad}  - {first}")
                out.extend(sub[1:])
        elif isinstance(x, (list, tuple)):
            out.append(f"{pad}{k}: {_flow(x)}")
        else:
            out.append(f"{pad}{k}: {_scalar(x)}")


def to_yaml(net):
    """A dict of NetParameter fields as crema YAML."""
    out = []
    _emit(net, 0, out)
    return "\n".join(out) + "\n"
