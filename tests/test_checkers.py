"""A log whose posted vks are checked, and beacons evaluated, on checker processes (registry/checkers.py)."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace

import pytest
from log_worker import make_vk

from wmark.errors import InvalidInput, InvalidSignature
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.transparency import verify_receipt
from wmark.registry import DuplicateCommitment, LogBusy, LogClient, LogServer, LogStore

OWNER_A, OWNER_B = SigningKey.generate(), SigningKey.generate()


@pytest.fixture
def checked(tmp_path):
    store = LogStore.open(tmp_path / "log")
    server = LogServer(store, checkers=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    processes = [c.process for c in server.checkers._checkers]
    try:
        with LogClient(server.url, timeout=30) as client:
            yield store, server, client, processes
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        store.close()
    assert not any(p.is_alive() for p in processes), "a checker outlived its server"


def test_receipts_from_checkers_verify_and_carry_the_logs_own_beacon(checked):
    store, _, client, _ = checked
    vks = [make_vk(OWNER_A, b"checked-%d" % i) for i in range(4)]
    receipts = [client.register(signed) for _, signed in vks]
    for (vk, _), receipt in zip(vks, receipts):
        verify_receipt(receipt, vk, store.public_key)  # the beacon's VRF proof included
        # The store, asked directly for the same (already registered) vk, evaluates the same beacon.
        again = store.register(vk)
        assert again.entry == receipt.entry and again.beacon == receipt.beacon
    assert sorted(r.entry.index for r in receipts) == [0, 1, 2, 3]


def test_refusals_come_back_through_a_checker_as_the_same_errors(checked):
    _, _, client, _ = checked
    vk, signed = make_vk(OWNER_A, b"first")
    client.register(signed)
    broken = replace(signed, payload=signed.payload.replace(b'"num_classes":10', b'"num_classes":11'))
    with pytest.raises(InvalidSignature, match="altered after the owner signed it"):
        client.register(broken)
    _, transplant = make_vk(OWNER_B, b"thief", commitments=vk.commitments)
    with pytest.raises(DuplicateCommitment, match="item 0 is in entry 0"):
        client.register(transplant)


def test_a_dead_checker_makes_appends_busy_at_once(checked):
    _, _, client, processes = checked
    client.register(make_vk(OWNER_A, b"before")[1])
    os.kill(processes[0].pid, signal.SIGKILL)
    processes[0].join(10)
    for seed in (b"after-1", b"after-2"):  # the one in flight when it is noticed, and the next
        with pytest.raises(LogBusy, match="checker process .* died"):
            client.register(make_vk(OWNER_A, seed)[1])


def test_a_checker_count_out_of_range_is_refused(tmp_path):
    with LogStore.open(tmp_path / "log") as store, pytest.raises(InvalidInput, match="--checkers must be"):
        LogServer(store, checkers=17)
    with LogStore.open(tmp_path / "log") as store, pytest.raises(InvalidInput, match="need batching"):
        LogServer(store, checkers=1, batching=False)


def test_a_stuck_checker_makes_appends_busy_not_hung(checked, monkeypatch):
    from wmark.registry import checkers

    _, _, client, processes = checked
    monkeypatch.setattr(checkers, "CHECK_TIMEOUT_S", 0.5)
    os.kill(processes[0].pid, signal.SIGSTOP)
    try:
        with pytest.raises(LogBusy, match="did not answer within"):
            client.register(make_vk(OWNER_A, b"stuck")[1])
    finally:
        os.kill(processes[0].pid, signal.SIGCONT)
    # Its late reply is skipped; the next request gets its own answer.
    vk, signed = make_vk(OWNER_A, b"unstuck")
    assert client.register(signed).entry.vk_digest == vk.digest


def test_a_checkers_reply_frame_carries_the_record_and_beacon_exactly_and_refuses_a_truncated_one(tmp_path):
    from wmark.registry import checkers

    with LogStore.open(tmp_path / "log") as store:
        secret, statement = store.beacon_key()
        vk = checkers.check_posted(make_vk(OWNER_A, b"frame")[1].to_json())
        beacon = store.register(vk).beacon
    frame = checkers._encode_checked(vk, beacon)
    assert checkers._decode_reply(frame, statement) == (vk, beacon)
    with pytest.raises(ValueError, match="truncated"):
        checkers._decode_reply(frame[:-1], statement)
    refused = DuplicateCommitment("3 of the 3 commitments of this verification key were already registered")
    with pytest.raises(DuplicateCommitment, match=rf"^{refused}$"):
        checkers._decode_reply(checkers._encode_refused(refused), statement)
