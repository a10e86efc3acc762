"""crema vs PyTorch on the two-layer models/char_lstm training step, interleaved in one run.

../shared/bench/side_by_side.py covers the one-layer LSTM workload; this covers the two-layer
char_lstm net (Embed 256 -> 64, LSTM 256, LSTM 256, InnerProduct 256, T = 50, N = 32). Both
engines run with 2 threads; rounds alternate which engine goes first, and the table shows
medians over rounds. crema's figure is `crema time --json` total_ms (forward + backward, no
update); PyTorch's is the median of 20 train steps (forward, backward, SGD) after 3 warm-ups,
so PyTorch carries its update and crema is slightly favoured, as in side_by_side.py.

  cargo build --release
  ~/peers-venv/bin/python benches/char_lstm_vs_torch.py --crema target/release/crema [--rounds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NET = os.path.join(HERE, "nets", "char_lstm_t50n32.yaml")
T, N, V, E, H = 50, 32, 256, 64, 256


def crema_ms(crema, iters):
    out = subprocess.run([crema, "time", "--model", NET, "--iterations", str(iters), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["total_ms"]


def torch_step():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, E)
            self.lstm = nn.LSTM(E, H, num_layers=2)  # (T, N, C), like Caffe's LSTM layer
            self.ip = nn.Linear(H, V)

        def forward(self, x):
            h, _ = self.lstm(self.emb(x))
            return self.ip(h)

    model = Net()
    tok = torch.randint(0, V, (T, N))
    tgt = torch.randint(0, V, (T, N))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(tok).reshape(T * N, V), tgt.reshape(T * N))
        loss.backward()
        opt.step()

    return step


def torch_ms(step, iters):
    for _ in range(3):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crema", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    a = ap.parse_args()
    step = torch_step()
    c, t = [], []
    for k in range(a.rounds):
        for eng in (["crema", "torch"] if k % 2 == 0 else ["torch", "crema"]):
            if eng == "crema":
                c.append(crema_ms(a.crema, a.iterations))
            else:
                t.append(torch_ms(step, a.iterations))
        print(f"round {k}: crema {c[-1]:.1f} ms, PyTorch {t[-1]:.1f} ms", file=sys.stderr)
    cm, tm = statistics.median(c), statistics.median(t)
    print("| workload | crema ms | PyTorch ms | crema / PyTorch |")
    print("| --- | --- | --- | --- |")
    print(f"| char_lstm (2 x LSTM 256, T 50, N 32) | {cm:.1f} | {tm:.1f} | {cm / tm:.2f} |")


if __name__ == "__main__":
    main()
