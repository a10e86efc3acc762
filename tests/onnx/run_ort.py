"""Runs an ONNX model with onnxruntime for crema's tests (tests/onnx.rs).

usage: run_ort.py MODEL.onnx IN_DIR OUT_DIR
Reads IN_DIR/NAME.npy for every graph input NAME ('/' written as '_'), runs the model on the CPU
with one thread, writes every graph output to OUT_DIR/NAME.npy and prints the output names, one a
line.
"""
import os
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    sys.stderr.write(
        f"{e}: the test venv lacks onnxruntime/numpy; run scripts/setup.sh "
        "(python3 -m venv .venv && .venv/bin/pip install onnxruntime numpy)\n"
    )
    sys.exit(3)


def file_name(name):
    return name.replace("/", "_") + ".npy"


def main():
    model, in_dir, out_dir = sys.argv[1:4]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        feeds[i.name] = np.load(os.path.join(in_dir, file_name(i.name))).astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    os.makedirs(out_dir, exist_ok=True)
    for n, v in zip(names, outs):
        np.save(os.path.join(out_dir, file_name(n)), np.ascontiguousarray(v, dtype=np.float32))
        print(n)


if __name__ == "__main__":
    main()
