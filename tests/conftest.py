"""Shared fixtures: seeds, a tiny backbone, random images, the shared data sets."""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HORSES = SHARED_DATA / "weizmann_horse"

# Hypothesis profiles (tests/test_properties.py). "ci", the default and what CI (CI=true)
# runs: few examples, derandomized so that every run tries the same ones, no example
# database. "dev" (HYPOTHESIS_PROFILE=dev): more examples, random each run.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("dev", max_examples=100, deadline=None, database=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def make_tiny_net() -> nn.Module:
    """3 conv stages (strides 1, 2, 4), a global pool and a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            act1=nn.ReLU(inplace=True),
            conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1),
            act2=nn.ReLU(inplace=True),
            conv3=nn.Conv2d(6, 8, 3, stride=2, padding=1),
            act3=nn.ReLU(inplace=True),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(8, 5),
        )
    )


@pytest.fixture
def tiny_net() -> nn.Module:
    return make_tiny_net()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def images(rng) -> list[np.ndarray]:
    """Three uint8 RGB images of different odd sizes."""
    return [
        (rng.random((h, w, 3)) * 255).astype(np.uint8) for h, w in [(37, 45), (29, 51), (37, 45)]
    ]


@pytest.fixture
def masks(images) -> list[np.ndarray]:
    """Binary masks: 1 where the red channel is bright."""
    return [(img[..., 0] > 127).astype(np.int64) for img in images]


@pytest.fixture(scope="session")
def horses_path() -> Path:
    if not (HORSES / "images").is_dir():
        pytest.skip(f"the Weizmann horse data is not at {HORSES} (it ships with the project's CI)")
    return HORSES
