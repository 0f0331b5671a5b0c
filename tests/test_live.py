"""Live sessions: ``wmark-prover serve`` as a real process on loopback.

The verifier side is ``wmark-verifier run`` in this process (torch is loaded
once) or, where the test plays a hostile or crashing peer, a raw socket
driving a VerifierSession.  The server must survive every broken session,
serve many at once, stop cleanly on SIGTERM, and lose no reveal record when
killed outright.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.helpers import free_port
from tests.support.live import MAX_FRAME, Keys, Peer, prover_server
from tests.support.schemas import assert_valid_report
from wmark.files import atomic_write
from wmark.protocol.framing import FrameDecoder, encode_frame
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.messages import Challenge, ModelRef, Refusal
from wmark.protocol.session import RevealAccepted, VerifierSession
from wmark.protocol.transcript import audit, load_transcript
from wmark.prover.ledger import Ledger
from wmark.verifier.cli import main as verifier_main


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=40, num_classes=10, input_shape=(1, 8, 8))
    save_signing_key(root / "owner.pem", owner)
    save_marking_key(root / "mk.wmk", pair.marking_key, None)
    atomic_write(root / "vk.json", pair.signed_vk.to_json())
    return Keys(root, pair)


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    """Any model will do where the session fails before the model is asked anything."""
    from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model, save_model

    path = tmp_path_factory.mktemp("model") / "untrained"
    save_model(path, new_model(ModelConfig("small_cnn", 10, (1, 8, 8), Preprocessing((0.5,), (0.25,)))))
    return path


def verifier_session(world, k: int) -> VerifierSession:
    # lambda 6: the small challenges these transport tests send (k = 2 or 3) are still answerable.
    return VerifierSession(world.pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)), k,
                           lam=6)


def honest_session(port: int, world, k: int, *, verdict: bool = True) -> tuple[dsse.Envelope, bytes]:
    """One session whose 'model' answers every committed label: (challenge, response bytes)."""
    session, peer = verifier_session(world, k), Peer(port)
    try:
        challenge = session.challenge()
        peer.send(encode_frame(challenge.to_json()))
        response = peer.receive()
        assert response is not None, "the server closed the connection instead of answering"
        event = session.receive(dsse.Envelope.from_json(response))
        if verdict and isinstance(event, RevealAccepted):
            peer.send(encode_frame(session.decide({i.index: i.label for i in event.items}).to_json()))
        return challenge, response
    finally:
        peer.close()


def closed_by_server(peer: Peer) -> bool:
    try:
        return peer.receive() is None
    finally:
        peer.close()


def wait_for_verdicts(ledger: Path, count: int, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while True:
        entries = Ledger.open_existing(ledger).entries()
        if sum(len(e.verdicts) for e in entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def run_verifier(world, server_port: int, tmp_path: Path, model: Path, k: int, name: str, *extra: str) -> int:
    return verifier_main(["run", "--connect", f"127.0.0.1:{server_port}", "--vk", str(world.vk),
                          "--model", str(model), "--k", str(k), "--out", str(tmp_path / name),
                          "--identity", str(tmp_path / "verifier.pem"), "--timeout", "20", *extra])


def test_run_accepts_the_marked_model_and_rejects_the_plain_one(digits_world, tmp_path, capsys):
    with prover_server(digits_world, tmp_path) as server:
        assert run_verifier(digits_world, server.port, tmp_path, digits_world.marked, 20, "marked.json",
                            "--json", "-") == 0
        captured = capsys.readouterr()
        assert "ACCEPTED" in captured.err  # with --json -, the text goes to stderr and the report to stdout
        json_report = json.loads(captured.out)
        assert_valid_report(json_report, "wmark/verdict-report")
        report = audit(load_transcript(tmp_path / "marked.json"))
        assert report.verdict.accepted and report.verdict.k == 20
        assert json_report["verdict"]["chain_digest"] == report.verdict.chain_digest.hex()
        assert run_verifier(digits_world, server.port, tmp_path, digits_world.plain, 20, "plain.json") == 1
        assert "REJECTED" in capsys.readouterr().out

        entries = wait_for_verdicts(server.ledger, 2)
        assert [v.accepted for e in entries for v in e.verdicts] == [True, False]
        assert "verdict ACCEPTED" in server.wait_for_log("verdict REJECTED")

        # Public verification (k = n) needs --budget 1.
        assert run_verifier(digits_world, server.port, tmp_path, digits_world.marked, 100, "public.json") == 1
        assert "REFUSED by the owner: public verification" in capsys.readouterr().err
        assert not (tmp_path / "public.json").exists()
        # The refusal is the owner's signed word: kept, and it verifies.
        refusal = dsse.Envelope.from_json((tmp_path / "public.refusal.json").read_bytes())
        assert b"public verification" in dsse.verify(refusal, digits_world.owner.public_key,
                                                     payload_type=Refusal.PAYLOAD_TYPE, what="refusal")


def test_broken_sessions_end_alone_and_the_server_keeps_serving(keys, tmp_path):
    with prover_server(keys, tmp_path, "--timeout", "2", "--budget", "1") as server:
        first_challenge, first_response = honest_session(server.port, keys, 3)

        garbage = Peer(server.port)
        garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_server(garbage)
        server.wait_for_log("over the limit of 65536")

        oversized = Peer(server.port)
        oversized.send((MAX_FRAME + 1).to_bytes(4, "big") + b"{")
        assert closed_by_server(oversized)
        server.wait_for_log(f"a frame of {MAX_FRAME + 1} bytes")

        not_json = Peer(server.port)
        not_json.send(encode_frame(b"\xff" * 100))
        assert closed_by_server(not_json)
        server.wait_for_log("verifier sent a frame that is not a DSSE envelope")

        # Out of order: a verdict where the challenge belongs, then a challenge where the verdict belongs.
        session = verifier_session(keys, 2)
        peer = Peer(server.port)
        peer.send(encode_frame(session.challenge().to_json()))
        reveal = dsse.Envelope.from_json(peer.receive())
        event = session.receive(reveal)
        verdict = session.decide({i.index: i.label for i in event.items})
        peer.send(encode_frame(session.challenge_envelope.to_json()))
        assert closed_by_server(peer)
        server.wait_for_log("verifier sent an invalid verdict: expected a Verdict, got a Challenge")
        early = Peer(server.port)
        early.send(encode_frame(verdict.to_json()))
        assert closed_by_server(early)
        server.wait_for_log("invalid challenge: expected a Challenge, got a Verdict")

        truncated = Peer(server.port)
        truncated.send(encode_frame(b"{}" * 50)[:40])
        truncated.sock.shutdown(socket.SHUT_WR)
        assert closed_by_server(truncated)
        server.wait_for_log("closed the connection 36 bytes into a frame of 100")

        silent = Peer(server.port)
        assert closed_by_server(silent)
        server.wait_for_log("sent no complete challenge within 2 s")

        # A replayed challenge gets the identical answer, and reveals nothing new.
        revealed = Ledger.open_existing(server.ledger).summary().revealed
        replay = Peer(server.port)
        replay.send(encode_frame(first_challenge.to_json()))
        assert replay.receive() == first_response
        replay.close()
        assert Ledger.open_existing(server.ledger).summary().revealed == revealed

        honest_session(server.port, keys, 3)
        assert server.process.poll() is None
        assert "Traceback" not in server.log() and "internal error" not in server.log()


def test_concurrent_sessions(keys, tmp_path):
    with prover_server(keys, tmp_path, "--budget", "1") as server:
        results, errors = [], []

        def client() -> None:
            try:
                results.append(honest_session(server.port, keys, 3))
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == 8
        entries = wait_for_verdicts(server.ledger, 8)
        assert len(entries) == 8 and all(len(e.verdicts) == 1 for e in entries)
        ledger = Ledger.open_existing(server.ledger)
        assert all(ledger.response_for(Challenge.digest_of(c)) == data for c, data in results)


def test_sigterm_shuts_the_server_down_cleanly(keys, tmp_path):
    with prover_server(keys, tmp_path) as server:
        honest_session(server.port, keys, 2)
        server.wait_for_log("verdict")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert "shut down after 1 sessions" in server.log()


def test_sigkill_loses_no_reveal_a_client_received(keys, tmp_path):
    with prover_server(keys, tmp_path, "--budget", "1") as server:
        received: list[tuple[dsse.Envelope, bytes]] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    received.append(honest_session(server.port, keys, 2, verdict=False))
                except (OSError, AssertionError):
                    return  # the server is gone

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(received) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert len(received) >= 12
        ledger = Ledger.open_existing(server.ledger)
        for challenge, data in received:
            assert ledger.response_for(Challenge.digest_of(challenge)) == data


def test_run_says_who_is_at_fault(keys, untrained_model, tmp_path, capsys):
    port = free_port()
    assert run_verifier(keys, port, tmp_path, untrained_model, 20, "v.json") == 2
    assert "cannot connect to the prover" in capsys.readouterr().err

    # A "prover" that answers with a well-framed envelope that is no reveal.
    listener = socket.create_server(("127.0.0.1", 0))
    bogus = dsse.sign("application/vnd.wmark.reveal+json", b"{}", SigningKey.generate())

    def fake_prover() -> None:
        conn, _ = listener.accept()
        with conn:
            FrameDecoder().feed(conn.recv(65536))
            conn.sendall(encode_frame(bogus.to_json()))
            conn.recv(1)

    thread = threading.Thread(target=fake_prover)
    thread.start()
    code = run_verifier(keys, listener.getsockname()[1], tmp_path, untrained_model, 20, "v.json")
    thread.join(timeout=30)
    listener.close()
    assert code == 2
    err = capsys.readouterr().err
    assert "prover sent an invalid message" in err and "Traceback" not in err
    assert not (tmp_path / "v.json").exists()


def test_run_against_a_prover_of_another_key_says_so(digits_world, keys, untrained_model, tmp_path, capsys):
    with prover_server(digits_world, tmp_path) as server:
        code = run_verifier(keys, server.port, tmp_path, untrained_model, 20, "v.json")
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        assert "closed the connection instead of sending its reveal" in err
        assert f"another verification key than {keys.vk}" in err and keys.pair.verification_key.digest.hex()[:16] in err
        assert "another verification key" in server.wait_for_log("another verification key")
