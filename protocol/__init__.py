"""wmark's cryptography and wire formats (no torch import).

Commitments, identities, DSSE envelopes, the ECVRF behind derived trigger
sets, keys, protocol messages and the sans-IO prover/verifier state machines.
"""
