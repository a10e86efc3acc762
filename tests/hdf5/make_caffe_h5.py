#!/usr/bin/env python3
"""Writes tests/hdf5/caffe_layout.caffemodel.h5 the way Caffe 1.0's Net::ToHDF5 lays out a
`snapshot_format: HDF5` snapshot, with h5py (an HDF5 writer independent of crema's):

- group `data`, one subgroup per layer in net order (layers without parameters too), named
  by the layer; in it one float32 dataset per parameter blob, named "0", "1", ..., shaped
  like the blob (hdf5_save_nd_dataset);
- no `diff` group (Caffe's snapshots call ToHDF5 with write_diff = false).

Values are value(layer, blob, k) = ((7 * k + 3 * blob + layer) % 17 - 8) / 8, which
tests/hdf5.rs recomputes. Run: python3 -m venv /tmp/h5 && /tmp/h5/bin/pip install h5py numpy
&& /tmp/h5/bin/python tests/hdf5/make_caffe_h5.py (h5py 3.16, HDF5 2.0.0 made the file).
"""
import os

import h5py
import numpy as np

# (layer name, parameter blob shapes): the deploy net in tests/hdf5.rs.
LAYERS = [
    ("data", []),
    ("conv1", [(2, 1, 3, 3), (2,)]),
    ("relu1", []),
    ("ip1", [(3, 8), (3,)]),
    ("prob", []),
]


def value(layer, blob, k):
    return ((7 * k + 3 * blob + layer) % 17 - 8) / 8.0


out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "caffe_layout.caffemodel.h5")
with h5py.File(out, "w") as f:
    data = f.create_group("data")
    for li, (name, shapes) in enumerate(LAYERS):
        g = data.create_group(name)
        for bi, shape in enumerate(shapes):
            n = int(np.prod(shape))
            vals = np.array([value(li, bi, k) for k in range(n)], dtype=np.float32)
            g.create_dataset(str(bi), data=vals.reshape(shape))
print(out)
