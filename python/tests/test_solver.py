"""crema.Solver: LeNet on Fashion-MNIST through Solver.step, snapshots, the GIL."""

import pathlib
import threading

import pytest

import crema

ROOT = pathlib.Path(__file__).resolve().parents[2]
FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def lenet_solver(tmp_path):
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST is missing from {FASHION} (Debian package dataset-fashion-mnist)")
    solver = tmp_path / "solver.yaml"
    solver.write_text(
        f"net: {ROOT / 'models' / 'lenet' / 'net.yaml'}\n"
        "test_iter: 5\ntest_interval: 0\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n"
        "lr_policy: inv\ngamma: 0.0001\npower: 0.75\ndisplay: 0\nmax_iter: 400\n"
        f"snapshot_prefix: {tmp_path / 'lenet'}\nsnapshot_after_train: false\nrandom_seed: 1\n"
    )
    return crema.Solver(str(solver))


def test_lenet_learns_through_step(lenet_solver):
    s = lenet_solver
    assert s.iter == 0
    assert [n.name for n in s.test_nets] == ["LeNet"]
    before = dict(s.test(0))["accuracy"]
    s.step(150)
    assert s.iter == 150
    after = dict(s.test(0))["accuracy"]
    assert before < 0.3, before
    assert after > 0.6, after
    # The train net's blobs alias the solver's: the last batch is there.
    data = s.net.blobs["data"].data
    assert data.shape == (64, 1, 28, 28) and 0.0 <= data.min() and data.max() <= 1.0


def test_snapshot_and_restore(lenet_solver, tmp_path):
    s = lenet_solver
    s.step(2)
    weights, state = s.snapshot()
    assert pathlib.Path(weights).exists() and pathlib.Path(state).exists()
    w = s.net.params["ip2"][0].data.copy()
    s.step(1)
    s.restore(str(state))
    assert s.iter == 2
    assert (s.net.params["ip2"][0].data == w).all()


def test_gil_is_released_during_step(lenet_solver):
    # Another Python thread runs while step() works: it finds the solver busy (a borrow error),
    # which it could never see if step() held the GIL.
    s = lenet_solver
    done = threading.Event()
    saw_busy = []

    def poll():
        while not done.is_set() and not saw_busy:
            try:
                s.iter
            except RuntimeError:
                saw_busy.append(True)

    t = threading.Thread(target=poll)
    t.start()
    try:
        s.step(40)
    finally:
        done.set()
        t.join()
    assert saw_busy
