"""Shared helpers: the repository's real third-party data (../shared/data from the project root)."""

import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = (ROOT / ".." / "shared" / "data").resolve()


def shared(*parts):
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"missing shared test data {p} (the tests read ../shared/data from the project root)")
    return p


@pytest.fixture(scope="session")
def expected():
    return json.loads(shared("expected.json").read_text())


def mnist_digits(n):
    """The first `n` MNIST test digits as N x 1 x 28 x 28 floats (pixel / 256) and their labels."""
    raw = shared("mnist", "t10k-first1000-images-idx3-ubyte").read_bytes()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    labels = np.frombuffer(
        shared("mnist", "t10k-first1000-labels-idx1-ubyte").read_bytes(), dtype=np.uint8, offset=8
    )[:n]
    return images.astype(np.float32) * np.float32(0.00390625), labels.astype(np.float32)
