"""Trigger items as committed, opened and checked (docs/design.md section 2).

An item is what a commitment in the verification key binds:

* a *derived* item is the output ``s_i`` of the owner's VRF on the index
  ``i``; the image and the label are pure functions of ``s_i``.  Opening it
  reveals the VRF proof, from which anyone holding ``vk`` recomputes ``s_i``,
  and nothing about other items.
* a *margin* item (Kim et al. 2023) is a VRF output too, but ``s_i`` selects
  an image of a public data split and a label other than its true class
  (:mod:`wmark.protocol.margin`); checking it needs that split's labels.
* an *imported* item is a user image in canonical form (uint8 CHW bytes
  behind a shape header) with its label.

:func:`open_item` is the verifier's single entry point: it checks the VRF
proof and both commitments and returns what to query the model with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wmark.errors import DecodeError, InvalidOpening, InvalidProof, LocalProtocolError
from wmark.protocol.beacon import bound_label
from wmark.protocol.hazmat.commitment import Commitment, Opening, check
from wmark.protocol.hazmat.encoding import WireEnum
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.hazmat.sampling import derive_label
from wmark.protocol.hazmat.vrf import VrfPublicKey

if TYPE_CHECKING:
    from wmark.protocol.margin import MarginItems

IMAGE_HEADER = b"wmark/image/v1"
VRF_ALPHA_TAG = b"wmark/trigger/v1"


class TriggerKind(WireEnum, what="trigger kind"):
    DERIVED = "derived"
    IMPORTED = "imported"
    MARGIN = "margin"

    @property
    def seeded(self) -> bool:
        """Whether items are VRF outputs (opened with a proof) rather than committed images."""
        return self is not TriggerKind.IMPORTED


def vrf_alpha(index: int, owner: PublicKey) -> bytes:
    """The VRF input of item ``index``: bound to the owner, so that a thief who
    re-signs the owner's VRF key and revealed items under its own identity
    holds proofs for the wrong inputs."""
    return VRF_ALPHA_TAG + bytes.fromhex(owner.keyid) + index.to_bytes(4, "big")


def image_header(shape: tuple[int, int, int]) -> bytes:
    return IMAGE_HEADER + b"".join(d.to_bytes(2, "big") for d in shape)


def pixel_count(shape: tuple[int, int, int]) -> int:
    c, h, w = shape
    return c * h * w


def encode_image(shape: tuple[int, int, int], pixels: bytes) -> bytes:
    """Canonical committed form of an image: header, C, H, W, then uint8 CHW pixels."""
    if len(pixels) != pixel_count(shape):
        raise DecodeError(f"image has {len(pixels)} bytes, expected {'x'.join(map(str, shape))}={pixel_count(shape)}")
    return image_header(shape) + pixels


def label_message(label: int) -> bytes:
    return b"wmark/label-value/v1" + label.to_bytes(4, "big")


@dataclass(frozen=True)
class ItemCommitments:
    """``c_t[i]`` and ``c_L[i]`` of the paper."""

    item: Commitment
    label: Commitment


@dataclass(frozen=True, repr=False)
class ItemOpening:
    """What the prover reveals for index ``i``: the VRF proof (derived) or the image
    (imported), the label, and the randomness of both commitments."""

    index: int
    label: int
    item_randomness: Opening
    label_randomness: Opening
    vrf_proof: bytes | None = None
    image: bytes | None = None

    def __repr__(self) -> str:
        return f"ItemOpening(index={self.index}, <secret>)"


@dataclass(frozen=True)
class OpenedItem:
    """A checked item: derived ones carry the seed, imported ones the pixels,
    margin ones both (the seed, and the pixels of the split image it selects).

    ``label`` is what the model must answer: the committed label, or for a
    registry-bound key the committed label shifted by the beacon.
    """

    index: int
    label: int
    seed: bytes | None
    pixels: bytes | None


def open_item(
    opening: ItemOpening,
    commitments: ItemCommitments,
    *,
    kind: TriggerKind,
    num_classes: int,
    input_shape: tuple[int, int, int],
    vrf_key: VrfPublicKey | None,
    owner: PublicKey,
    margin: MarginItems | None = None,
    beta: bytes | None = None,
) -> OpenedItem:
    """Check one opening against the verification key; raise naming the failure.

    A margin item is checked against ``margin``, the split it was drawn from
    (the caller has matched the split's digest with the key's).  ``beta``, the
    checked beacon output of a registry-bound key's receipt, turns the
    committed label into the one the model is asked for (:func:`bound_label`).
    """
    what = f"item {opening.index}"
    true_class: int | None = None  # only a margin item has one
    if not 0 <= opening.label < num_classes:
        raise InvalidOpening(f"{what}: label {opening.label} outside [0, {num_classes})")
    if kind.seeded:
        if vrf_key is None or opening.vrf_proof is None or opening.image is not None:
            raise InvalidOpening(f"{what}: a {kind.value} item opens with its VRF proof only")
        try:
            seed = vrf_key.verify(vrf_alpha(opening.index, owner), opening.vrf_proof)
        except (InvalidProof, DecodeError) as exc:
            raise InvalidOpening(f"{what}: {exc}") from None
        pixels = None
        if kind is TriggerKind.MARGIN:
            if margin is None:
                raise LocalProtocolError(f"{what}: a margin item is checked against its key's query split")
            position, label = margin.item(seed, opening.index)
            pixels, true_class = margin.split.image(position), margin.split.labels[position]
        else:
            label = derive_label(seed, num_classes)
        if label != opening.label:
            raise InvalidOpening(f"{what}: label is not the one derived from the VRF output")
        message = seed
    else:
        if opening.image is None or opening.vrf_proof is not None:
            raise InvalidOpening(f"{what}: an imported item opens with its image")
        message, header = opening.image, image_header(input_shape)
        if not message.startswith(header) or len(message) != len(header) + pixel_count(input_shape):
            raise InvalidOpening(f"{what}: image is not a canonical {'x'.join(map(str, input_shape))} image")
        seed, pixels = None, message[len(header):]
    check(commitments.item, message, opening.item_randomness, what=f"{what} (image)")
    check(commitments.label, label_message(opening.label), opening.label_randomness, what=f"{what} (label)")
    if beta is None:
        return OpenedItem(opening.index, opening.label, seed, pixels)
    return OpenedItem(opening.index, bound_label(beta, opening.index, opening.label, num_classes,
                                                 true_class=true_class), seed, pixels)

