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

import tests.hypothesis_profiles  # noqa: F401  (registers and loads the "ci"/"random" profiles)
from tests.support.helpers import DigitsWorld, build_digits_world

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def ray_address():
    """The address of one local Ray instance of 2 CPUs that every Ray test shares
    (starting one costs seconds), joined in-process by wmark.cluster and by
    address from the commands tests run.  Without Ray the tests skip, unless
    WMARK_REQUIRE_RAY is set (CI installs the cluster extra: a skip there would
    hide a broken install)."""
    if os.environ.get("WMARK_REQUIRE_RAY"):
        import ray
    else:
        ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
    from wmark.cluster import LOCAL_CPUS

    context = ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def digits_world(tmp_path_factory) -> DigitsWorld:
    return build_digits_world(tmp_path_factory.mktemp("digits-world"))


@pytest.fixture(autouse=True)
def own_data_home(tmp_path_factory, monkeypatch):
    """Each test keeps its default ledgers (``$XDG_DATA_HOME/wmark/ledgers``) to itself,
    and commands it runs as processes inherit that."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
    monkeypatch.delenv("WMARK_LEDGER_DIR", raising=False)


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
