"""KeyGen (Adi et al. 2018, Section 2.2): commit to every trigger item and label.

A derived trigger set (docs/design.md section 2) draws item ``i`` as the VRF output
on ``i`` under a fresh trigger key, so the owner cannot choose or re-draw any
item.  A margin set (Kim et al. 2023) draws its items the same way but maps
each to an image of a public split (:mod:`wmark.protocol.margin`).  An imported set
commits to the images it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from Crypto.Random import get_random_bytes

from wmark.errors import InvalidInput
from wmark.protocol.beacon import LabelSource
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import Scheme, commit
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.sampling import derive_label
from wmark.protocol.hazmat.vrf import VrfSecretKey, proof_to_hash
from wmark.protocol.items import ItemCommitments, ItemOpening, TriggerKind, encode_image, label_message, vrf_alpha
from wmark.protocol.keys import MAX_CLASSES, MAX_ITEMS, VK_PAYLOAD_TYPE, MarkingKey, VerificationKey, parse_shape
from wmark.protocol.margin import MarginItems, MarginSource, QuerySplit
from wmark.protocol.zk import SALT_BYTES, InputHasher, ZkCommitments, ZkSecrets


@dataclass(frozen=True)
class KeyPair:
    marking_key: MarkingKey
    verification_key: VerificationKey
    signed_vk: dsse.Envelope


def check_parameters(n: int, num_classes: int, input_shape: tuple[int, int, int]) -> None:
    if not 1 <= n <= MAX_ITEMS:
        raise InvalidInput(f"trigger set size n={n} must be between 1 and {MAX_ITEMS}")
    if not 2 <= num_classes <= MAX_CLASSES:
        raise InvalidInput(f"label count L={num_classes} must be between 2 and {MAX_CLASSES}")
    parse_shape(list(input_shape), what="input shape")


def _commit_item(index: int, message: bytes, label: int, scheme: Scheme, **extra: bytes) -> tuple[ItemCommitments, ItemOpening]:
    c_item, r_item = commit(message, scheme)
    c_label, r_label = commit(label_message(label), scheme)
    return ItemCommitments(c_item, c_label), ItemOpening(index, label, r_item, r_label, **extra)


def _zk_commitments(openings: Sequence[ItemOpening], hasher: InputHasher) -> tuple[ZkCommitments, ZkSecrets]:
    salts = tuple(get_random_bytes(SALT_BYTES) for _ in openings)
    hashes = tuple(hasher(o, salt) for o, salt in zip(openings, salts))
    return ZkCommitments(hasher.input_scale, hashes), ZkSecrets(hasher.input_scale, salts)


def _finish(owner: SigningKey, scheme: Scheme, kind: TriggerKind, input_shape: tuple[int, int, int],
            num_classes: int, pairs: list[tuple[ItemCommitments, ItemOpening]],
            vrf_sk: VrfSecretKey | None, zk: InputHasher | None, margin: MarginSource | None = None,
            label_source: LabelSource = LabelSource.COMMITTED) -> KeyPair:
    openings = tuple(o for _, o in pairs)
    zk_public, zk_secret = _zk_commitments(openings, zk) if zk is not None else (None, None)
    vk = VerificationKey(
        scheme=scheme, kind=kind, input_shape=input_shape, num_classes=num_classes,
        commitments=tuple(c for c, _ in pairs), owner=owner.public_key,
        vrf_key=vrf_sk.public_key if vrf_sk else None,
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(), zk=zk_public, margin=margin,
        labels=label_source,
    )
    mk = MarkingKey(vk_digest=vk.digest, scheme=scheme, kind=kind, input_shape=input_shape,
                    num_classes=num_classes, openings=openings, vrf_secret_key=vrf_sk, zk=zk_secret, margin=margin,
                    labels=label_source)
    return KeyPair(mk, vk, dsse.sign(VK_PAYLOAD_TYPE, vk.payload, owner))


def keygen_derived(*, owner: SigningKey, n: int, num_classes: int, input_shape: tuple[int, int, int],
                   scheme: Scheme = Scheme.HASH, progress=None, zk: InputHasher | None = None,
                   label_source: LabelSource = LabelSource.COMMITTED) -> KeyPair:
    """KeyGen for a derived trigger set: items are VRF outputs under a fresh trigger key.

    With ``zk``, every item's hidden input is also committed to with a fresh
    salt, for zero-knowledge verification (docs/design.md section 4c).  With
    ``label_source=REGISTRY`` the trained labels are fixed by the registry's beacon
    once the key is registered (:mod:`wmark.protocol.beacon`).
    """
    check_parameters(n, num_classes, input_shape)
    vrf_sk = VrfSecretKey.generate()
    pairs = _seeded_items(vrf_sk, owner, n, lambda seed, _: derive_label(seed, num_classes), scheme, progress)
    return _finish(owner, scheme, TriggerKind.DERIVED, input_shape, num_classes, pairs, vrf_sk, zk,
                   label_source=label_source)


def keygen_margin(*, owner: SigningKey, n: int, num_classes: int, split: QuerySplit,
                  scheme: Scheme = Scheme.HASH, progress=None,
                  label_source: LabelSource = LabelSource.COMMITTED) -> KeyPair:
    """KeyGen for margin queries (Kim et al. 2023): VRF outputs mapped to images of ``split``
    with labels other than their true ones (:mod:`wmark.protocol.margin`)."""
    check_parameters(n, num_classes, split.shape)
    items = MarginItems(split, n, num_classes)
    vrf_sk = VrfSecretKey.generate()
    pairs = _seeded_items(vrf_sk, owner, n, lambda seed, i: items.item(seed, i)[1], scheme, progress)
    return _finish(owner, scheme, TriggerKind.MARGIN, split.shape, num_classes, pairs, vrf_sk, None,
                   margin=split.source, label_source=label_source)


def _seeded_items(vrf_sk: VrfSecretKey, owner: SigningKey, n: int, label_of, scheme: Scheme,
                  progress) -> list[tuple[ItemCommitments, ItemOpening]]:
    """Item ``i`` is the VRF output on ``(owner, i)``, committed with ``label_of(seed, i)``."""
    pairs = []
    for i in range(n):
        proof = vrf_sk.prove(vrf_alpha(i, owner.public_key))
        seed = proof_to_hash(proof)
        pairs.append(_commit_item(i, seed, label_of(seed, i), scheme, vrf_proof=proof))
        if progress:
            progress(1)
    return pairs


def keygen_imported(*, owner: SigningKey, images: Sequence[bytes], labels: Sequence[int], num_classes: int,
                    input_shape: tuple[int, int, int], scheme: Scheme = Scheme.HASH, progress=None,
                    zk: InputHasher | None = None, label_source: LabelSource = LabelSource.COMMITTED) -> KeyPair:
    """KeyGen for imported images, given as uint8 CHW pixel bytes at ``input_shape`` (``zk`` as for
    :func:`keygen_derived`)."""
    check_parameters(len(images), num_classes, input_shape)
    if len(labels) != len(images):
        raise InvalidInput(f"{len(images)} images but {len(labels)} labels")
    pairs = []
    for i, (pixels, label) in enumerate(zip(images, labels)):
        if not 0 <= label < num_classes:
            raise InvalidInput(f"label {label} of image {i} is outside [0, {num_classes})")
        canonical = encode_image(input_shape, pixels)
        pairs.append(_commit_item(i, canonical, label, scheme, image=canonical))
        if progress:
            progress(1)
    return _finish(owner, scheme, TriggerKind.IMPORTED, input_shape, num_classes, pairs, None, zk,
                   label_source=label_source)
