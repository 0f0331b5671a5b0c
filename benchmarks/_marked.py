"""Marked models kept by one study for another: margin.py writes them (``--save-models``), evasion.py reads
them (``--models-from``), so the Fashion-MNIST suite trains each seed's derived-key and margin model once.

One folder per seed and scheme, ``seed-N/SCHEME/``, holds what an owner needs to claim the model: the
owner's signing key (``owner.pem``), the marking key (``key.mk``, in plaintext: this folder is secret), the
signed verification key (``vk.json``), the model (``model/``, safetensors through
:func:`wmark.watermark.modelio.save_model`, never a pickle), and last ``manifest.json``: what the model is
(:class:`Spec`) and how long its training took.  The manifest is written after everything else, so a folder
without one is a training cut off, never a model half written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from wmark.errors import InvalidInput
from wmark.files import atomic_write
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, load_signing_key, save_signing_key
from wmark.protocol.keyfile import load_marking_key, save_marking_key
from wmark.protocol.keygen import KeyPair
from wmark.protocol.keys import MarkingKey, load_verification_key, verify_vk_envelope
from wmark.watermark.modelio import Classifier, load_model, save_model
from wmark.watermark.train import Recipe

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class Spec:
    """What a marked model is: two runs that agree on all of it train the same model from the same key."""

    dataset: str
    subset: int | None
    seed: int
    scheme: str  # margin.py's names: "adi" (a derived key) or "margin"
    arch: str
    recipe: dict[str, Any]
    epochs: int | None  # the --epochs override, None for the recipe's own

    @staticmethod
    def of(dataset: str, subset: int | None, seed: int, scheme: str, arch: str, recipe: Recipe,
           epochs: int | None) -> Spec:
        # Through JSON, as the manifest stores it (tuples become lists), so that specs compare.
        return Spec(dataset, subset, seed, scheme, arch, json.loads(json.dumps(asdict(recipe))), epochs)


@dataclass(frozen=True, repr=False)
class Loaded:
    """A kept model with its owner's keys, as they cross to a worker: the marking key as bytes
    (a VRF secret key holds a C object that cannot be pickled)."""

    owner: SigningKey
    marking_key: bytes
    signed_vk: dsse.Envelope
    model: Classifier
    train_seconds: float
    folder: str

    def pair(self) -> KeyPair:
        return KeyPair(MarkingKey.from_bytes(self.marking_key, what=f"{self.folder}/key.mk"),
                       verify_vk_envelope(self.signed_vk, what=f"{self.folder}/vk.json"), self.signed_vk)


def folder_of(root: Path, seed: int, scheme: str) -> Path:
    return root / f"seed-{seed}" / scheme


def check_fresh(root: Path, option: str) -> None:
    """Refuse a folder that holds anything: a second run must not mix its models and keys with a first's."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InvalidInput(f"{option} {root}: exists and is not an empty folder; name a new one")


def save(root: Path, spec: Spec, owner: SigningKey, pair: KeyPair, model: Classifier, train_seconds: float) -> Path:
    """Write one marked model with its keys, the manifest last."""
    folder = folder_of(root, spec.seed, spec.scheme)
    folder.mkdir(parents=True, exist_ok=True)
    save_signing_key(folder / "owner.pem", owner)
    save_marking_key(folder / "key.mk", pair.marking_key, None)
    atomic_write(folder / "vk.json", pair.signed_vk.to_json())
    save_model(folder / "model", model)
    manifest = {**asdict(spec), "train_seconds": train_seconds, "written_by": "benchmarks/margin.py"}
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return folder


def read_spec(folder: Path) -> tuple[Spec, float]:
    """The manifest's spec and training seconds; a missing or malformed manifest is refused."""
    path = folder / MANIFEST
    if not path.is_file():
        raise InvalidInput(f"{path}: missing (no model of seed {folder.parent.name.removeprefix('seed-')}, "
                           f"scheme {folder.name} was saved there)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes, not a manifest")
    try:
        data = json.loads(path.read_bytes())
        return Spec(**{f.name: data[f.name] for f in fields(Spec)}), float(data["train_seconds"])
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"{path}: not a manifest margin.py wrote ({type(exc).__name__}: {exc})") from None


def mismatch(found: Spec, wanted: Spec) -> str | None:
    """The first thing ``found`` differs from ``wanted`` in, in words, or None."""
    for name in (f.name for f in fields(Spec)):
        have, want = getattr(found, name), getattr(wanted, name)
        if name == "recipe" and have != want:
            keys = sorted(set(have) | set(want), key=str)
            return "; ".join(f"recipe.{k} is {have.get(k)!r}, this run needs {want.get(k)!r}"
                             for k in keys if have.get(k) != want.get(k))
        if have != want:
            return f"{name} is {have!r}, this run needs {want!r}"
    return None


def load(root: Path, wanted: Spec) -> Loaded:
    """The model and keys kept for ``wanted``, refused unless its manifest says it is that model."""
    folder = folder_of(root, wanted.seed, wanted.scheme)
    found, seconds = read_spec(folder)
    if problem := mismatch(found, wanted):
        raise InvalidInput(f"{folder / MANIFEST}: not the model this run would train ({problem})")
    _, signed = load_verification_key(folder / "vk.json")
    mk = load_marking_key(folder / "key.mk", None)
    return Loaded(load_signing_key(folder / "owner.pem"), mk.to_bytes(), signed, load_model(folder / "model"),
                  seconds, str(folder))
