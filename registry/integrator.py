"""Batch integration of appends (docs/design.md section 4b), as Trillian Tessera does it.

Requests :meth:`Integrator.wait` for their vk's batch; one integrator
thread takes everything queued (up to ``MAX_BATCH``), integrates it with
:meth:`LogStore.register_many` (one durable transaction, one tree head, one
checkpoint), asks every configured witness to cosign the checkpoint in
parallel, and only then hands each waiting request its receipt; then, when
due, it merges the newest entries into the commitment index
(:meth:`LogStore.merge_index`).  A crash
before the commit loses the whole batch, and no request got a receipt for it.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

from wmark.errors import WmarkError
from wmark.files import exclusive_lock
from wmark.protocol.beacon import Beacon
from wmark.protocol.hazmat.note import Note
from wmark.protocol.keys import VerificationKey, VkRecord
from wmark.protocol.transparency import Receipt
from wmark.registry.cosigning import WitnessClient
from wmark.registry.errors import LogBusy
from wmark.registry.store import MAX_BATCH, LogStore

# A request waits at most this long for its batch (integration + witnesses).
WAIT_S = 120.0
COSIGN_LOCK_NAME = "cosign.lock"
# A vk, its beacon when evaluated already, and where its receipt goes.
_Queued = tuple[VerificationKey | VkRecord, Beacon | None, Future[Receipt]]


class Integrator:
    def __init__(self, store: LogStore, witnesses: tuple[WitnessClient, ...] = ()) -> None:
        self.store, self.witnesses = store, witnesses
        self._queue: queue.Queue[_Queued | None] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(witnesses)), thread_name_prefix="wmark-cosign")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wmark-integrator", daemon=True)
        self._thread.start()

    async def wait(self, vk: VerificationKey | VkRecord, beacon: Beacon | None = None) -> Receipt:
        """Append ``vk`` in the next batch; its receipt once the batch is durable and cosigned.
        The wait, on the caller's asyncio loop, holds no thread.  ``beacon``: vk's, evaluated
        already (LogStore.register_many)."""
        if self._closed:
            raise LogBusy(f"{self.store.directory}: the log is shutting down")
        future: Future[Receipt] = Future()
        self._queue.put((vk, beacon, future))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), WAIT_S)
        except TimeoutError:
            raise LogBusy(f"{self.store.directory}: the batch did not complete within {WAIT_S:.0f} s") from None

    def close(self) -> None:
        """Finish the batches already queued, then stop."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._pool.shutdown()
            for witness in self.witnesses:
                witness.close()

    def _run(self) -> None:
        # The stop signals belong to serve_until_signalled's sigwait: a thread that
        # left them unblocked would take a SIGTERM's default action and kill the log
        # mid-batch.  The cosigning threads, started from this one, inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._integrate(batch)

    def _integrate(self, batch: list[_Queued]) -> None:
        try:
            with self._cosigning():
                results = self.store.register_many([vk for vk, _, _ in batch], [b for _, b, _ in batch],
                                                   defer_merge=True)
                results = self._cosigned(results)
        except WmarkError as exc:
            for _, _, future in batch:
                future.set_exception(exc)
            return
        except BaseException as exc:  # never leave a request waiting on a dead thread
            for _, _, future in batch:
                future.set_exception(LogBusy(f"{self.store.directory}: integration failed ({exc!r})"))
            raise
        for (_, _, future), result in zip(batch, results):
            if isinstance(result, WmarkError):
                future.set_exception(result)
            else:
                future.set_result(result)
        # With the receipts out, not before: the merge delays the next batch instead.
        try:
            self.store.merge_index()
        except WmarkError as exc:  # the next batch's transaction merges them if this keeps failing
            print(f"wmark log: merging the commitment index failed: {exc}", file=sys.stderr, flush=True)

    def _cosigning(self) -> AbstractContextManager[None]:
        """With witnesses, the log directory's cosigning lock, held from the commit until the
        witnesses have answered: processes serving one log (``--workers``) then show the
        witnesses its checkpoints in the order they were committed.  Unlocked, a worker
        could commit size N, another N + 5 and have it cosigned first, and the witnesses
        would refuse N (older than what they cosigned) for good (docs/design.md section 4b)."""
        if not self.witnesses:
            return nullcontext()
        return exclusive_lock(self.store.directory / COSIGN_LOCK_NAME)

    def _cosigned(self, results: list[Receipt | WmarkError]) -> list[Receipt | WmarkError]:
        receipts = [r for r in results if isinstance(r, Receipt)]
        if not self.witnesses or not receipts:
            return results
        note = receipts[-1].note()
        assert note is not None, "a log with checkpoints issued this receipt"

        def consistency(first: int, second: int) -> tuple[bytes, ...]:
            return self.store.consistency_proof(first, second).hashes

        found = [s for s in self._pool.map(lambda w: w.cosign(note, consistency), self.witnesses) if s is not None]
        if not found:
            return results
        size = receipts[-1].inclusion_proof.tree_size
        cosigned: Note = self.store.add_cosignatures(size, tuple(found))
        # Receipts of earlier entries deduplicated into this batch carry the same
        # (latest) checkpoint; each is of the latest tree.
        return [r.with_checkpoint(cosigned) if isinstance(r, Receipt) else r for r in results]
