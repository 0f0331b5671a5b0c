"""Independent jobs in one process, or as Ray tasks on a cluster (docs/design.md section 6).

The heavy work of the studies (one training per seed, attack and strength)
and of zero-knowledge proving (one proof per challenged item) is a list of
independent jobs.  :func:`run_jobs` runs such a list and returns the results
in the list's order, either one after another in this process or, given a
Ray address, as one Ray task per job with the CPUs and memory the job
declares, so Ray places each where it fits.  A task that fails, or whose
worker dies, is retried once; a second failure ends the run with an error
naming the job.  A run given a deadline stops when it passes: the jobs not
finished by then are cancelled (on Ray, a running task's worker is killed).
Progress (done / total, ETA) goes to stderr.

Ray is an optional extra (``pip install -e '.[cluster]'``); nothing here
imports it unless an address is given.
"""

from __future__ import annotations

import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from wmark.errors import InvalidInput, WmarkError

LOCAL = "local"
AUTO = "auto"
# `--ray local` starts a Ray instance in-process with this many CPUs.
LOCAL_CPUS = 2
# How long a cluster address may take to accept a connection before we give up on it.
CONNECT_TIMEOUT_S = 10
# A failed or lost task is tried once more before the run gives up.
RETRIES = 1
# Values a process keeps for the jobs it runs (see per_process): margin.py keeps four.
PROCESS_CACHE_ENTRIES = 8
_process_cache: OrderedDict[Hashable, Any] = OrderedDict()


class JobFailed(WmarkError):
    """A job failed on every try."""


class Overdue(JobFailed):
    """The run's deadline passed with jobs unfinished (those were cancelled)."""


@dataclass(frozen=True)
class Job:
    """``fn(*args)`` named ``name`` (for progress and errors), needing ``num_cpus``
    CPUs and ``memory`` bytes (None: no reservation) while it runs."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    num_cpus: float = 1
    memory: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_cpus <= 0 or (self.memory is not None and self.memory <= 0):
            raise InvalidInput(f"job {self.name}: CPUs and memory must be positive")


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine is part of;
    ``local``: start one here with :data:`LOCAL_CPUS` CPUs), once per process."""
    ray = _ray()
    # A HOST:PORT is parsed (and a malformed one refused) even when Ray is up already;
    # `auto` and ray:// client addresses are Ray's to resolve.
    host_port = None if address in (LOCAL, AUTO) or "://" in address else _host_port(address)
    if ray.is_initialized():
        return
    if address == LOCAL:
        ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, log_to_driver=False)
    else:
        if host_port is not None:
            _check_reachable(address, host_port)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InvalidInput(f"cannot join the Ray cluster at {address!r}: {exc}") from None


def _host_port(address: str) -> tuple[str, int]:
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--ray {address!r}: not '{LOCAL}', '{AUTO}' or a cluster address HOST:PORT")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, host_port: tuple[str, int]) -> None:
    """Ray waits minutes for a cluster address at which nothing answers: try the
    HOST:PORT with one TCP connection first (an absent ``auto`` cluster fails at once)."""
    try:
        socket.create_connection(host_port, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InvalidInput(f"cannot join the Ray cluster at {address!r}: nothing answers there "
                           f"({exc.strerror or exc})") from None


def per_process(key: Hashable, make: Callable[[], Any]) -> Any:
    """``make()``, computed once per process for ``key`` (the last
    :data:`PROCESS_CACHE_ENTRIES` kept): what every job in a worker reads (a
    data set) is loaded once there.  A script's jobs travel to Ray's workers by
    value, their module's globals with them; this cache lives here, in an
    importable module, so it is neither shipped with them nor left empty."""
    if key in _process_cache:
        _process_cache.move_to_end(key)
        return _process_cache[key]
    value = _process_cache[key] = make()
    while len(_process_cache) > PROCESS_CACHE_ENTRIES:
        _process_cache.popitem(last=False)
    return value


def share(value: Any, ray_address: str | None) -> Any:
    """``value`` as jobs given as arguments should receive it: itself in one
    process; on Ray a reference to one copy in the object store, so that a
    value many jobs read (a model) is sent once, not once per job."""
    if ray_address is None:
        return value
    connect(ray_address)
    return _ray().put(value)


def run_jobs(jobs: Sequence[Job], *, ray_address: str | None = None, progress: TextIO | None = sys.stderr,
             what: str = "job", on_done: Callable[[int], object] | None = None,
             on_result: Callable[[int, Any], object] | None = None,
             deadline: float | None = None) -> list[Any]:
    """Every job's result, in the order of ``jobs``: in this process when
    ``ray_address`` is None, else as Ray tasks (see the module docstring).
    ``on_done(1)`` is called as each job finishes (a progress bar's update),
    ``on_result(index, result)`` too, in the order they finish (so a caller
    can save what is done before the last job ends).
    ``deadline`` (a ``time.monotonic()`` instant): raise :class:`Overdue` once it
    passes with jobs unfinished, judged before each job in this process (one
    under way is not interrupted) and, on Ray, while waiting for the tasks."""
    meter = _Progress(len(jobs), what, progress, on_done)
    if ray_address is None:
        done: list[Any] = []
        for job in jobs:
            _check_deadline(deadline, len(jobs) - len(done), len(jobs), what)
            done.append(_in_worker(job.fn, job.num_cpus, job.args, job.kwargs))
            if on_result is not None:
                on_result(len(done) - 1, done[-1])
            meter.tick()
        return done
    connect(ray_address)
    ray = _ray()
    _check_feasible(ray, jobs, what)
    _check_deadline(deadline, len(jobs), len(jobs), what)  # nothing submitted once it has passed
    for job in jobs:
        _ship_by_value(job.fn)
    pending = {_submit(ray, job): i for i, job in enumerate(jobs)}
    results: list[Any] = [None] * len(jobs)
    while pending:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
        if not done:  # the deadline passed
            _cancel(ray, pending)
            raise _overdue(len(pending), len(jobs), what)
        index = pending.pop(done[0])
        try:
            results[index] = ray.get(done[0])
        except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
            _cancel(ray, pending)
            cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
            raise JobFailed(f"{what} {jobs[index].name} failed after {RETRIES + 1} tries: "
                            f"{type(cause).__name__}: {str(cause).splitlines()[-1] if str(cause) else ''}") from None
        if on_result is not None:
            on_result(index, results[index])
        meter.tick()
    return results


def _check_deadline(deadline: float | None, unfinished: int, total: int, what: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise _overdue(unfinished, total, what)


def _overdue(unfinished: int, total: int, what: str) -> Overdue:
    return Overdue(f"the deadline passed with {unfinished} of {total} {what}s unfinished (cancelled)")


def _cancel(ray: Any, pending: Iterable[Any]) -> None:
    """Stop the tasks not finished: a queued one never starts, a running one's worker is killed."""
    for ref in pending:
        ray.cancel(ref, force=True)


def _check_feasible(ray: Any, jobs: Sequence[Job], what: str) -> None:
    """Ray waits forever for resources no node has: refuse such a job up front."""
    total = ray.cluster_resources()
    for job in jobs:
        if job.num_cpus > total.get("CPU", 0) or (job.memory or 0) > total.get("memory", 0):
            raise InvalidInput(f"{what} {job.name} needs {job.num_cpus:g} CPUs and {(job.memory or 0) / 1e9:.1f} GB; "
                               f"the whole Ray cluster has {total.get('CPU', 0):g} CPUs and "
                               f"{total.get('memory', 0) / 1e9:.1f} GB")


def _submit(ray: Any, job: Job) -> Any:
    options: dict[str, Any] = {"num_cpus": job.num_cpus, "max_retries": RETRIES, "retry_exceptions": True}
    if job.memory is not None:
        options["memory"] = job.memory
    # The job's arguments go top-level, where Ray resolves object references to their values.
    return ray.remote(_remote).options(**options).remote(job.fn, job.num_cpus, job.kwargs, *job.args)


def _remote(fn: Callable[..., Any], num_cpus: float, kwargs: dict[str, Any], *args: Any) -> Any:
    return _in_worker(fn, num_cpus, args, kwargs)


def _in_worker(fn: Callable[..., Any], num_cpus: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``fn`` with torch using as many threads as the job declared CPUs (Ray
    does not pin them), here and on a worker alike, so a job computes the same
    either way; the caller's thread count is restored after.  This layer never
    imports torch: a job that uses it has loaded it (unpickling its arguments
    does, on a worker) before it runs."""
    torch = sys.modules.get("torch")
    if torch is None:
        return fn(*args, **kwargs)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(num_cpus)))
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def _ship_by_value(fn: Callable[..., Any]) -> None:
    """Functions of a script (a benchmark) are not importable on Ray's workers:
    send their module's code along; the library's are imported there."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__" or module.__name__.split(".")[0] == "wmark":
        return
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidInput("--ray needs Ray: pip install 'wmark[cluster]'") from None
    return ray


class _Progress:
    """``done/total`` and an ETA from the mean time per job so far, on one line."""

    def __init__(self, total: int, what: str, out: TextIO | None,
                 on_done: Callable[[int], object] | None = None) -> None:
        self.total, self.what, self.out, self.on_done = total, what, out, on_done
        self.done = 0
        self.start = time.monotonic()

    def tick(self) -> None:
        self.done += 1
        if self.on_done is not None:
            self.on_done(1)
        if self.out is None:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"{self.what}s done {self.done}/{self.total}, {elapsed:.0f} s so far, ETA {eta:.0f} s",
              file=self.out, flush=True)
