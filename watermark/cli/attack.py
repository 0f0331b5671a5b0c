"""``wmark attack``: try to remove a watermark, as an adversary would (docs/design.md section 5)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from pathlib import Path

from wmark.console import add_command, add_json_argument, checked_model, write_json_report
from wmark.errors import InvalidInput
from wmark.protocol.decision import parse_probability
from wmark.protocol.hazmat.identity import load_signing_key
from wmark.protocol.keys import key_set_mismatch, load_verification_key
from wmark.watermark.attacks import ATTACKS, attack_spec, run_attack
from wmark.watermark.attacks.verification import OwnerKeys, Verification, model_digest, verify_privately
from wmark.watermark.cli._task import add_data_arguments, short_digest, task_from, trigger_set_from
from wmark.watermark.device import pick_device
from wmark.watermark.evaluate import Evaluation, evaluate
from wmark.watermark.margin import split_for_key
from wmark.watermark.modelio import check_fits, check_writable, load_model, save_model

OWNER_KEY_NAME = "owner.pem"
REPORT_TYPE, REPORT_VERSION = "wmark/attack-report", 1  # schema: wmark/schemas/attack-report.json
PRIVATE_K = 20
LABEL = 29
# Option name -> (type, metavar, help); each is a field of some attack's parameters.
PARAMETERS = {
    "epochs": (int, "N", "passes over the adversary's data (fine-tuning, re-training, distillation, extraction)"),
    "lr": (float, "LR", "learning rate of the adversary's SGD"),
    "batch_size": (int, "N", "images per batch of the adversary's training"),
    "rate": (float, "R", "prune: fraction of weights to zero"),
    "sigma": (float, "S", "weight-noise: times each tensor's std; input-noise: times the pixel range"),
    "bits": (int, "B", "quantise: bits per weight"),
    "temperature": (float, "T", "distill: softmax temperature of the teacher's answers"),
    "alpha": (float, "A", "distill: weight of the teacher's answers against the true labels"),
    "arch": (str, "ARCH", "distill, extract-*: the student's architecture (default: the victim's)"),
    "copies": (int, "N", "distill, extract-*: noisy copies of each adversary image added to the transfer set"),
    "noise": (float, "S", "distill, extract-*: pixel noise of those copies, times the pixel range"),
}


def _shown(value: object) -> object:
    """How a parameter's value reads; None (the student's architecture) means the victim's."""
    return "(the victim's)" if value is None else value


def _kinds() -> str:
    return "\n".join(f"  {kind:<14}{spec.summary}" for kind, spec in ATTACKS.items())


def _defaults() -> str:
    by_params: dict[type, list[str]] = {}
    for kind, spec in ATTACKS.items():
        by_params.setdefault(spec.params, []).append(kind)
    lines = []
    for params, kinds in by_params.items():
        options = " ".join(f"--{f.name.replace('_', '-')} {_shown(f.default)}"
                           for f in fields(params))
        lines.append(f"  {', '.join(kinds)}:\n      {options}")
    return "\n".join(lines)


EPILOG = f"""\
examples:
  wmark attack --model models/marked --kind ftal --out models/ftal --mk keys/mk.wmk
  wmark attack --model models/marked --kind prune --rate 0.9 --out models/pruned --mk keys/mk.wmk --vk keys/vk.json
  wmark attack --model models/marked --kind extract-hard --out models/stolen --mk keys/mk.wmk --vk keys/vk.json

kinds:
{_kinds()}

parameters and their defaults (the attacks as benchmarked on digits):
{_defaults()}

Every attack works on a copy and writes a new model to --out; MODEL_DIR is
never changed. The adversary's data is the data set's adversary split, held
out from the owner's training. With --mk, test and trigger accuracy are shown
before and after; with --vk as well (and the owner's signing key), a private
verification of the attacked model runs in-process at k={PRIVATE_K} and at k=n,
with the real protocol. For rtll and rtal, the model with the original output
layer plugged back (the paper's check) is reported beside the model as
attacked, which is what --out receives. input-noise changes how a model is
served, not its weights, so it writes nothing. Runs are seeded."""


def register(subparsers) -> None:
    p = add_command(subparsers, "attack",
                    description="Attack a model with the adversary's removal attacks (fine-tuning, re-training, "
                                "pruning, distillation, extraction, noise, quantisation) using only data the "
                                "owner never trained on, and report what is left of the watermark.",
                    epilog=EPILOG, func=run)
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="the model to attack (left unchanged)")
    p.add_argument("--kind", required=True, metavar="KIND", help="the attack (see kinds below)")
    p.add_argument("--out", metavar="OUT_DIR", help="directory to write the attacked model to")
    p.add_argument("--mk", metavar="FILE", help="the marking key whose trigger accuracy to report (DIR/mk.wmk)")
    p.add_argument("--vk", metavar="FILE", help="with --mk: also run private verifications (vk.json)")
    p.add_argument("--owner-key", metavar="PEM",
                   help=f"the owner's signing key (default: {OWNER_KEY_NAME} beside the vk)")
    p.add_argument("--p0", type=parse_probability, metavar="P",
                   help="imported trigger sets: the chance an unmarked model gives a trigger its label")
    add_data_arguments(p)
    group = p.add_argument_group("attack parameters (default: the kind's, listed below)")
    for name, (type_, metavar, text) in PARAMETERS.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=type_, metavar=metavar, default=argparse.SUPPRESS,
                           help=text)
    p.add_argument("--seed", type=int, default=0, help="seeds the attack's training and noise")
    p.add_argument("--force", action="store_true", help="replace an existing model in OUT_DIR (and an existing "
                                                        "--json file)")
    add_json_argument(p)


def _owner_keys(args: argparse.Namespace, mk) -> OwnerKeys | None:
    if args.vk is None:
        return None
    if mk is None:
        raise InvalidInput("--vk needs --mk: the owner answers the verifier's challenges with the marking key")
    vk, _ = load_verification_key(args.vk)
    owner = load_signing_key(Path(args.owner_key) if args.owner_key else Path(args.vk).parent / OWNER_KEY_NAME)
    mismatch = key_set_mismatch(mk, vk, owner.public_key, mk_name=str(args.mk), vk_name=str(args.vk))
    if mismatch is not None:
        raise InvalidInput(mismatch)
    return OwnerKeys(mk, vk, owner)


def _check_out(args: argparse.Namespace, saveable: bool) -> None:
    if not saveable:
        if args.out is not None:
            raise InvalidInput(f"{args.kind} changes how the model is served, not its weights: there is nothing to "
                               f"write (leave out --out)")
        return
    if args.out is None:
        raise InvalidInput(f"{args.kind} needs --out OUT_DIR for the attacked model")
    if Path(args.out).resolve() == Path(args.model).resolve():
        raise InvalidInput("--out must differ from --model: an attack never changes the model it attacks")
    check_writable(args.out, overwrite=args.force)


def run(args: argparse.Namespace) -> int:
    spec = attack_spec(args.kind)
    overrides = {name: getattr(args, name) for name in PARAMETERS if hasattr(args, name)}
    params = spec.make_params(**overrides)  # refused now rather than after loading and training
    _check_out(args, spec.saveable)
    model = load_model(checked_model(args, args.model))
    task = task_from(args)
    check_fits(model.config, task, what=f"data set {task.name}")
    triggers, mk = trigger_set_from(args.mk, task) if args.mk else (None, None)
    if triggers is not None:
        check_fits(model.config, triggers, what=f"the trigger set of {args.mk}")
    keys = _owner_keys(args, mk)
    margin = split_for_key(mk.margin, task) if mk is not None and mk.margin is not None else None
    device = pick_device(args.device)
    model.to(device)

    marked = f", marked with vk {short_digest(model.config.vk_digest)}" if model.config.vk_digest else ""
    print(f"model     {args.model}: {model.config.describe()}{marked}, on {device}")
    print(f"data      {task.name} adversary split, {len(task.adversary)} images (held out from the owner's training)")
    settings = ", ".join(f"{f.name} {_shown(getattr(params, f.name))}" for f in fields(params))
    print(f"attack    {spec.kind}: {spec.summary}; {settings}; seed {args.seed}")
    before = evaluate(model, task.test, triggers)
    result = run_attack(model, spec.kind, task, seed=args.seed, device=device, **overrides)
    views = {"": result.attacked}
    if result.plugged_back:
        views = {"as attacked": result.attacked, "original layer": result.checked}

    print(f"{'':<{LABEL}}{'test':>8}{'trigger':>10}")
    _print_scores("before", before)
    report = {"type": REPORT_TYPE, "version": REPORT_VERSION, "model": str(args.model), "kind": spec.kind,
              "parameters": {f.name: getattr(params, f.name) for f in fields(params)}, "seed": args.seed,
              "before": _scores_obj("before", before), "after": [], "verifications": [],
              "out": args.out if spec.saveable else None}
    for view, attacked in views.items():
        after = evaluate(attacked, task.test, triggers)
        _print_scores(_label("after", view), after)
        report["after"].append(_scores_obj(view or "as attacked", after))
    if keys is not None:
        for view, attacked in views.items():
            digest = model_digest(attacked)
            for k in dict.fromkeys((min(PRIVATE_K, keys.vk.n), keys.vk.n)):
                verification = verify_privately(attacked, keys, k, digest=digest, p0=args.p0, margin=margin)
                _print_verification(_label("verify", view, f"k={k}"), verification)
                report["verifications"].append({"view": view or "as attacked", **asdict(verification)})
    write_json_report(args, report)
    if spec.saveable:
        save_model(args.out, result.attacked, overwrite=args.force)
        print(f"wrote     {args.out} (the model as attacked)")
    return 0


def _scores_obj(view: str, evaluation: Evaluation) -> dict:
    return {"view": view, "test": evaluation.test.to_json(),
            "triggers": evaluation.triggers.to_json() if evaluation.triggers is not None else None}


def _label(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _print_scores(label: str, evaluation: Evaluation) -> None:
    trigger = f"{evaluation.triggers.accuracy:>10.4f}" if evaluation.triggers is not None else f"{'-':>10}"
    print(f"{label:<{LABEL}}{evaluation.test.accuracy:>8.4f}{trigger}")


def _print_verification(label: str, v: Verification) -> None:
    verdict = "accepted" if v.accepted else "rejected"
    tau = f"needs {v.tau}" if v.tau is not None else "no number of matches suffices"
    print(f"{label:<{LABEL}}{verdict}: {v.matches}/{v.k} matches ({tau}), p-value {v.p_value}; "
          f"P(accept) over challenges {v.acceptance_probability:.3f}")
