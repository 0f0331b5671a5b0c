"""wmark.cluster: jobs in one process or as Ray tasks, in order, retried once, failures named."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from wmark.cluster import PROCESS_CACHE_ENTRIES, Job, JobFailed, Overdue, connect, per_process, run_jobs, share
from wmark.errors import InvalidInput
from wmark.harness.programs import run_cli


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


def report_pid_then_wait(folder: str, x: int) -> int:
    """Write this worker's process id where the test sees it (one file per try), then
    work long enough to be killed; a try that finds a kill file answers at once."""
    tries = Path(folder)
    attempt = len(list(tries.glob("pid-*")))
    (tries / f"pid-{attempt}").write_text(str(os.getpid()))
    for _ in range(600):
        if (tries / f"spare-{attempt}").exists():
            return x
        time.sleep(0.1)
    return -1


def kill_workers(folder: Path, tries: int, stop: threading.Event) -> threading.Thread:
    """SIGKILL, from outside, the worker of each of the first ``tries`` tries of
    report_pid_then_wait, and let the next try answer."""
    def killer() -> None:
        for attempt in range(tries + 1):
            pid_file = folder / f"pid-{attempt}"
            while not pid_file.exists() or not pid_file.read_text():
                if stop.wait(0.05):
                    return
            if attempt < tries:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            else:
                (folder / f"spare-{attempt}").write_text("answer")
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def test_jobs_in_one_process_come_back_in_order_with_progress():
    ticks: list[int] = []
    finished: list[tuple[int, int]] = []
    out = io.StringIO()
    assert run_jobs([Job(f"n{i}", square, (i,)) for i in range(4)], progress=out, on_done=ticks.append,
                    on_result=lambda i, r: finished.append((i, r))) == [0, 1, 4, 9]
    assert ticks == [1] * 4 and "done 4/4" in out.getvalue() and "ETA" in out.getvalue()
    assert finished == [(0, 0), (1, 1), (2, 4), (3, 9)]


def test_per_process_makes_each_value_once_and_keeps_the_latest_few():
    made: list[int] = []

    def make(i: int):
        return lambda: made.append(i) or [i]

    first = per_process(("test", 0), make(0))
    assert per_process(("test", 0), make(0)) is first and made == [0]
    for i in range(1, PROCESS_CACHE_ENTRIES + 1):
        per_process(("test", i), make(i))
    assert per_process(("test", 0), make(0)) is not first and made.count(0) == 2, "the oldest was dropped"


def test_share_without_ray_is_the_value_itself():
    value = object()
    assert share(value, None) is value


def test_a_job_must_declare_positive_resources():
    with pytest.raises(InvalidInput):
        Job("x", square, (1,), num_cpus=0)


def test_on_ray_results_keep_order_a_lost_task_is_retried_and_a_failure_is_named(ray_address, tmp_path):
    jobs = [Job(f"n{i}", square, (i,)) for i in range(5)]
    finished: dict[int, int] = {}
    assert run_jobs(jobs, ray_address=ray_address, progress=None, on_result=finished.__setitem__) == [0, 1, 4, 9, 16]
    assert finished == {i: i * i for i in range(5)}  # each result handed over as its task ended
    marker = str(tmp_path / "crashed")
    assert run_jobs([Job("fragile", crash_once, (marker, 7))], ray_address=ray_address, progress=None) == [7]
    assert Path(marker).exists()
    with pytest.raises(JobFailed, match=r"job boom failed after 2 tries: ValueError: no answer for 3"):
        run_jobs([Job("fine", square, (2,)), Job("boom", always_fails, (3,))], ray_address=ray_address,
                 progress=None)
    # Ray would wait forever for memory no node has; it is refused up front instead.
    with pytest.raises(InvalidInput, match="job huge needs"):
        run_jobs([Job("huge", square, (1,), memory=1 << 60)], ray_address=ray_address, progress=None)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kills", [1, 2])
def test_a_worker_killed_from_outside_is_retried_once_then_named(ray_address, tmp_path, kills):
    """A worker process SIGKILLed mid-job: the job runs again; killed on its
    retry too, the run ends naming the job, not waiting for it."""
    stop = threading.Event()
    killer = kill_workers(tmp_path, kills, stop)
    jobs = [Job("steady", square, (3,)), Job("doomed", report_pid_then_wait, (str(tmp_path), 5))]
    try:
        if kills == 1:
            assert run_jobs(jobs, ray_address=ray_address, progress=None) == [9, 5]
        else:
            with pytest.raises(JobFailed, match=r"job doomed failed after 2 tries: .*(Worker|died|crash)"):
                run_jobs(jobs, ray_address=ray_address, progress=None)
    finally:
        stop.set()
        killer.join(10)
    assert len(list(tmp_path.glob("pid-*"))) == kills + (kills == 1)


@pytest.mark.timeout(120)
def test_an_address_where_no_cluster_answers_is_refused_at_once(digits_world, tmp_path):
    """Ray itself would wait minutes for it; serve refuses before listening."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
    with pytest.raises(InvalidInput, match="--ray 'somewhere': not 'local', 'auto' or a cluster address HOST:PORT"):
        connect("somewhere")
    r = run_cli("wmark-prover", "serve", "--mk", str(digits_world.mk), "--vk", str(digits_world.vk), "--port", "0",
                "--ledger", str(tmp_path / "ledger.sqlite"), "--ray", "127.0.0.1:9", timeout=60)
    assert r.returncode == 2 and "cannot join the Ray cluster at '127.0.0.1:9': nothing answers there" in r.stderr, \
        r.stderr
    assert "Traceback" not in r.stderr


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_jobs_in_one_process_stop_at_the_deadline_before_the_next_job():
    ran: list[int] = []
    with pytest.raises(Overdue, match="deadline passed with 2 of 3 jobs unfinished"):
        run_jobs([Job(f"n{i}", nap, (0.3,)) for i in range(3)], progress=None, on_done=ran.append,
                 deadline=time.monotonic() + 0.1)
    assert ran == [1], "the job under way finished; the next was not started"
    assert run_jobs([Job("quick", square, (3,))], progress=None, deadline=time.monotonic() + 60) == [9]


@pytest.mark.timeout(300)
def test_on_ray_the_deadline_cancels_unfinished_tasks(ray_address):
    started = time.monotonic()
    with pytest.raises(Overdue, match="deadline passed with 2 of 2 proofs unfinished"):
        run_jobs([Job(f"slow {i}", nap, (120,)) for i in range(2)], ray_address=ray_address, progress=None,
                 what="proof", deadline=time.monotonic() + 2)
    assert time.monotonic() - started < 60, "waited for the tasks instead of cancelling them"
    with pytest.raises(Overdue, match="2 of 2 jobs unfinished"):  # passed already: nothing is submitted
        run_jobs([Job("a", square, (1,)), Job("b", square, (2,))], ray_address=ray_address, progress=None,
                 deadline=time.monotonic())
    # Both of Ray's CPUs are free again: the naps were killed, not left to run their 120 s.
    assert run_jobs([Job("quick", square, (4,))], ray_address=ray_address, progress=None,
                    deadline=time.monotonic() + 60) == [16]
