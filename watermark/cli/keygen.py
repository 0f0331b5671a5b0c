"""``wmark keygen``: KeyGen of Adi et al. (2018), Section 2.2."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from wmark.console import add_command, read_passphrase
from wmark.errors import InvalidInput
from wmark.files import atomic_write, check_output_path
from wmark.protocol.beacon import LabelSource
from wmark.protocol.hazmat.commitment import Scheme
from wmark.protocol.hazmat.identity import SigningKey, load_signing_key, save_signing_key
from wmark.protocol.items import TriggerKind
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import check_parameters, keygen_derived, keygen_imported, keygen_margin
from wmark.protocol.margin import QuerySplit
from wmark.watermark.datasets import DATASETS, load_task
from wmark.watermark.margin import query_split
from wmark.watermark.triggers import Fit, import_images, random_labels

EPILOG = """\
examples:
  wmark keygen --out keys                          # 100 derived triggers for digits (1x8x8, 10 classes)
  wmark keygen --out keys --input-shape 3x32x32 --kind imported \\
      --images watermarknn-trigger-set --fit center-crop   # the paper's own trigger set
  wmark keygen --out keys --zk                     # also commit for zero-knowledge verification
  wmark keygen --out margin-keys --kind margin     # 100 margin queries from the digits query split
  wmark keygen --out margin-keys --kind margin --dataset cifar10 --data-root ~/data

Writes DIR/vk.json (public: the signed commitments, DSSE envelope) and
DIR/mk.wmk (secret: the openings, encrypted with scrypt + AES-256-GCM under a
passphrase from a prompt or WMARK_PASSPHRASE). The owner's signing key is
DIR/owner.pem unless --owner-key names another; keep it and mk.wmk private.

--kind margin (Kim et al. 2023, trained by `wmark embed --scheme margin`)
selects each query, by a VRF output, among the images of the data set's
held-out query split, with a label other than its true class; the classes
and input shape are the data set's, and n is at most the split's size."""


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1x8x8 or 3x32x32 (C x H x W)")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def register(subparsers) -> None:
    p = add_command(subparsers, "keygen",
                    description="Sample a trigger set, commit to every image and label, and sign the "
                                "verification key (Adi et al. 2018, KeyGen).", epilog=EPILOG, func=run)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for vk.json and mk.wmk")
    p.add_argument("--n", type=int, default=100, help="trigger set size (derived and margin sets)")
    p.add_argument("--num-classes", type=int, default=argparse.SUPPRESS, metavar="L",
                   help="number of classes of the model (default 10; margin: the data set's)")
    p.add_argument("--input-shape", type=parse_shape, default=argparse.SUPPRESS, metavar="CxHxW",
                   help="the model's input shape (default 1x8x8; margin: the data set's)")
    p.add_argument("--kind", choices=[k.value for k in TriggerKind], default=TriggerKind.DERIVED.value,
                   help="derived: images drawn from a VRF, nobody can choose them; imported: your own images; "
                        "margin: in-distribution queries drawn from a VRF (Kim et al. 2023)")
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="margin: the data set whose query split the queries come from")
    p.add_argument("--data-root", metavar="PATH", help="margin: where --dataset's files are (all but digits; fashion-mnist defaults to "
                        "Debian's /usr/share/datasets/fashion-mnist)")
    p.add_argument("--images", metavar="PATH", help="imported: a folder of images, or one holding pics/1.jpg ...")
    p.add_argument("--labels-file", metavar="FILE",
                   help="imported: one numeric label per line (default: a single *.txt in --images, else random)")
    p.add_argument("--fit", choices=[f.value for f in Fit], default=Fit.RESIZE.value,
                   help="imported: how images are brought to the input shape")
    p.add_argument("--scheme", choices=[s.value for s in Scheme], default=Scheme.HASH.value,
                   help="commitment scheme: SHA-256 hash, or perfectly hiding Pedersen on secp256k1")
    p.add_argument("--owner-key", metavar="PEM", help="the owner's P-256 signing key (default: DIR/owner.pem, "
                                                      "created when absent)")
    p.add_argument("--zk", action="store_true",
                   help="also commit to each trigger image with a salted Poseidon hash, so ownership can be proven "
                        "in zero knowledge to a verifier holding the model (needs pip install '.[zk]')")
    p.add_argument("--labels", choices=[s.value for s in LabelSource], default=None,
                   help="registry: the trained labels are the committed ones shifted by the registry's beacon, drawn "
                        "when the key is registered, so no choice of images makes an innocent model match (register "
                        "before embedding); committed: the paper's. Default: registry for imported and --zk keys, "
                        "whose inputs the owner chooses or hides; committed for the others")
    p.add_argument("--insecure-plaintext", action="store_true",
                   help="store mk.wmk unencrypted (for tests and demos only)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key pair in DIR")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    vk_path, mk_path = out / "vk.json", out / "mk.wmk"
    if not args.force and (vk_path.exists() or mk_path.exists()):
        raise InvalidInput(f"{out}: already holds a key pair; use --force to replace it")
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"{out}: exists and is not a directory")
    check_output_path(vk_path, what="verification key", force=args.force)
    check_output_path(mk_path, what="marking key", force=args.force, kind="a marking key")
    kind, scheme = TriggerKind(args.kind), Scheme(args.scheme)
    if kind is TriggerKind.IMPORTED and not args.images:
        raise InvalidInput("--kind imported needs --images PATH")
    if kind is not TriggerKind.IMPORTED and (args.images or args.labels_file):
        raise InvalidInput("--images and --labels-file only apply to --kind imported")
    if kind is TriggerKind.MARGIN:
        if args.zk:
            raise InvalidInput("--zk does not apply to --kind margin: its queries are public images")
        split, args.num_classes, args.input_shape = _margin_split(args)
    else:
        if args.dataset != "digits" or args.data_root:
            raise InvalidInput("--dataset and --data-root only apply to --kind margin")
        args.num_classes, args.input_shape = getattr(args, "num_classes", 10), getattr(args, "input_shape", (1, 8, 8))
    check_parameters(args.n, args.num_classes, args.input_shape)
    label_source = (LabelSource(args.labels) if args.labels else
                    LabelSource.REGISTRY if kind is TriggerKind.IMPORTED or args.zk else LabelSource.COMMITTED)
    zk = _zk_committer(kind, args.input_shape) if args.zk else None
    passphrase = None if args.insecure_plaintext else read_passphrase(confirm=True, purpose=f"new key {mk_path}")

    if kind is TriggerKind.IMPORTED:
        imported = import_images(args.images, args.input_shape, fit=Fit(args.fit),
                                 labels_file=args.labels_file, num_classes=args.num_classes)
        labels = imported.labels or random_labels(len(imported.pixels), args.num_classes)
        print(f"read {len(imported.pixels)} images from {args.images} at {_shape(args.input_shape)} "
              f"({args.fit}); labels {'from ' + str(imported.labels_file) if imported.labels else 'drawn at random'}")

    if args.owner_key:
        owner = load_signing_key(args.owner_key)
        owner_path, created = Path(args.owner_key), False
    else:
        # A new owner key is saved with the pair, not before: an interrupted
        # keygen leaves no key behind that signs nothing.
        owner_path = out / "owner.pem"
        created = not owner_path.exists()
        owner = SigningKey.generate() if created else load_signing_key(owner_path)

    n = len(imported.pixels) if kind is TriggerKind.IMPORTED else args.n
    with tqdm(total=n, desc="committing", unit="item", leave=False) as bar:
        if kind is TriggerKind.DERIVED:
            pair = keygen_derived(owner=owner, n=args.n, num_classes=args.num_classes,
                                  input_shape=args.input_shape, scheme=scheme, progress=bar.update, zk=zk,
                                  label_source=label_source)
        elif kind is TriggerKind.MARGIN:
            pair = keygen_margin(owner=owner, n=args.n, num_classes=args.num_classes, split=split, scheme=scheme,
                                 progress=bar.update, label_source=label_source)
        else:
            pair = keygen_imported(owner=owner, images=imported.pixels, labels=labels,
                                   num_classes=args.num_classes, input_shape=args.input_shape,
                                   scheme=scheme, progress=bar.update, zk=zk, label_source=label_source)
    # The secret goes first: a crash between the two renames leaves an unusable
    # mk.wmk rather than a published vk.json whose openings are lost.
    if created:
        save_signing_key(owner_path, owner)
    save_marking_key(mk_path, pair.marking_key, passphrase)
    atomic_write(vk_path, pair.signed_vk.to_json())
    vk = pair.verification_key
    print(f"owner key   {owner_path}{' (new)' if created else ''}  {owner.public_key.fingerprint}")
    print(f"trigger set {vk.n} {kind.value} items, {vk.num_classes} classes, input {_shape(vk.input_shape)}, "
          f"{scheme.value} commitments{' + salted Poseidon (zero-knowledge)' if vk.zk else ''}")
    if vk.margin:
        print(f"queries     from {vk.margin.describe()}")
    if vk.registry_bound:
        print(f"labels      drawn by the registry: register {vk_path} (wmark register) before wmark embed")
    print(f"wrote       {vk_path} (public)  vk digest {vk.digest.hex()[:16]}…")
    print(f"wrote       {mk_path} (secret, {'PLAINTEXT' if passphrase is None else 'scrypt + AES-256-GCM'})")
    return 0


def _margin_split(args: argparse.Namespace) -> tuple[QuerySplit, int, tuple[int, int, int]]:
    """The query split of --dataset, and the classes and shape it fixes (checked against any given)."""
    task = load_task(args.dataset, args.data_root)
    for option, given, fixed in (("--num-classes", getattr(args, "num_classes", None), task.num_classes),
                                 ("--input-shape", getattr(args, "input_shape", None), task.input_shape)):
        if given is not None and given != fixed:
            raise InvalidInput(f"{option}: a margin key for {task.name} takes its {fixed} from the data set")
    split = query_split(task)
    if args.n > len(split):
        raise InvalidInput(f"--n {args.n}: margin queries take distinct images of {task.name}'s query split, "
                           f"which has {len(split)}")
    return split, task.num_classes, task.input_shape


def _zk_committer(kind: TriggerKind, shape: tuple[int, int, int]):
    from wmark.watermark.zkcircuit import InputCommitter, ezkl_module

    ezkl_module()  # fails before the passphrase prompt, with the install hint
    return InputCommitter(kind, shape)


def _shape(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))
