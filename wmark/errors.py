"""The exceptions of wmark, each naming what is wrong and, for protocol
errors, which side is at fault (the way h11 separates LocalProtocolError from
RemoteProtocolError).

Every exception a user can cause derives from :class:`WmarkError`; command
lines turn it into one line on stderr and exit code 2.
"""

from __future__ import annotations


class WmarkError(Exception):
    """Base of every error that is the input's fault, not a bug."""


class InvalidInput(WmarkError):
    """A file, option or value that does not fit (wrong shape, size, format)."""


class DecodeError(InvalidInput):
    """Bytes that are not a well-formed object of the expected type/version."""


class InvalidSignature(WmarkError):
    """A signature that does not verify under the expected key."""


class InvalidOpening(WmarkError):
    """An opening that does not match its commitment."""


class InvalidProof(WmarkError):
    """A VRF, Merkle or zero-knowledge proof that does not verify."""


class WrongPassphrase(WmarkError):
    """A marking key file that cannot be decrypted with the given passphrase."""


class LocalProtocolError(WmarkError):
    """This side was asked to do something the protocol forbids."""


class RemoteProtocolError(WmarkError):
    """The peer sent something the protocol forbids."""


class ModelOracleError(WmarkError):
    """The suspect model (file or endpoint) could not be queried as promised."""


class ProverBusy(WmarkError):
    """The prover turned the session away unheard, with its signed "busy, retry after N s"."""


def is_library_failure(exc: BaseException) -> bool:
    """A Rust library's panic (pyo3's PanicException derives from BaseException, so
    ``except Exception`` misses it) or an arithmetic overflow or stack exhaustion."""
    return isinstance(exc, (OverflowError, RecursionError)) or type(exc).__name__ == "PanicException"
