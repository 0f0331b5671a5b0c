"""The primitives under the protocol, kept apart as pyca keeps its hazmat layer.

Commitments (hash and Pedersen), tagged hashing, the ECVRF, RFC 9162 Merkle
trees, DSSE envelopes, ECDSA identities, unbiased sampling and canonical
encodings (docs/design.md section 3).  They check what they are given and
raise on any misuse, but they know nothing of trigger sets or sessions:
callers should reach them through :mod:`wmark.protocol`, which composes them.
"""
