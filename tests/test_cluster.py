"""wmark.cluster: jobs in one process or as Ray tasks, in order, retried once, failures named."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from wmark.cluster import Job, JobFailed, run_jobs
from wmark.errors import InvalidInput


def square(x: int) -> int:
    return x * x


def crash_once(marker: str, x: int) -> int:
    """Kill the worker process the first time (a lost task), answer the second."""
    if not Path(marker).exists():
        Path(marker).write_text("crashed")
        os._exit(1)
    return x


def always_fails(x: int) -> int:
    raise ValueError(f"no answer for {x}")


def test_jobs_in_one_process_come_back_in_order_with_progress():
    ticks: list[int] = []
    out = io.StringIO()
    assert run_jobs([Job(f"n{i}", square, (i,)) for i in range(4)], progress=out, on_done=ticks.append) == [0, 1, 4, 9]
    assert ticks == [1] * 4 and "done 4/4" in out.getvalue() and "ETA" in out.getvalue()


def test_a_job_must_declare_positive_resources():
    with pytest.raises(InvalidInput):
        Job("x", square, (1,), num_cpus=0)


def test_on_ray_results_keep_order_a_lost_task_is_retried_and_a_failure_is_named(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
    jobs = [Job(f"n{i}", square, (i,)) for i in range(5)]
    assert run_jobs(jobs, ray_address="local", progress=None) == [0, 1, 4, 9, 16]
    marker = str(tmp_path / "crashed")
    assert run_jobs([Job("fragile", crash_once, (marker, 7))], ray_address="local", progress=None) == [7]
    assert Path(marker).exists()
    with pytest.raises(JobFailed, match=r"job boom failed after 2 tries: ValueError: no answer for 3"):
        run_jobs([Job("fine", square, (2,)), Job("boom", always_fails, (3,))], ray_address="local", progress=None)
    # Ray would wait forever for memory no node has; it is refused up front instead.
    with pytest.raises(InvalidInput, match="job huge needs"):
        run_jobs([Job("huge", square, (1,), memory=1 << 60)], ray_address="local", progress=None)
