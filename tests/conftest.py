"""Shared fixtures: one derived key pair and two digits models, trained once per run.

``marked`` carries the key's watermark; ``plain`` is the same recipe without
triggers (the paper's NO-WM row), so it plays the innocent model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from tests.support.helpers import DigitsWorld, build_digits_world

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Hypothesis profiles.  "ci" (the default, and what CI runs) is derandomised:
# the same examples on every run, so a red run is reproducible and a green run
# is not luck.  "random" draws fresh examples each run, for long local hunts:
# HYPOTHESIS_PROFILE=random python -m pytest tests/test_decision.py  (CI=1 always means "ci")
# Tests set their own max_examples and deadline, never derandomize, so the
# profile alone decides whether a run is reproducible.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("random", derandomize=False, deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def digits_world(tmp_path_factory) -> DigitsWorld:
    return build_digits_world(tmp_path_factory.mktemp("digits-world"))


@pytest.fixture
def fresh_copy(tmp_path):
    """Copy a file or directory into this test's tmp_path, so a test can change it."""
    def copy(path: Path) -> Path:
        target = tmp_path / path.name
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copy(path, target)
        return target
    return copy
