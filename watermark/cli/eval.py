"""``wmark eval``: a model's test accuracy and trigger-set accuracy."""

from __future__ import annotations

import argparse

from wmark.console import add_command, add_json_argument, checked_model, write_json_report
from wmark.watermark.cli._task import add_data_arguments, short_digest, task_from, trigger_set_from
from wmark.watermark.datasets import SPLITS
from wmark.watermark.device import pick_device
from wmark.watermark.evaluate import Score, evaluate
from wmark.watermark.modelio import check_fits, load_model, model_file_digest

REPORT_TYPE = "wmark/evaluation"
REPORT_VERSION = 2  # 2: digests in hex, the scores under "scores" (schema: wmark/schemas/evaluation.json)

EPILOG = """\
examples:
  wmark eval --model models/marked --mk keys/mk.wmk
  wmark eval --model models/plain --mk keys/mk.wmk --json plain.json
  wmark eval --model models/cifar --mk keys/mk.wmk --dataset cifar10 --data-root ~/data

Test accuracy is measured on the data set's test split (--split picks
another); trigger accuracy is the fraction of the marking key's trigger
images the model answers with their trigger labels. A marked model scores
near 1; any other model near 1/classes. Top-5 is shown when there are more
than 5 classes. This is the owner's own measurement with the secret key;
proving ownership to someone else is wmark-verifier's job."""


def register(subparsers) -> None:
    p = add_command(subparsers, "eval",
                    description="Measure a model: its accuracy on the task's test data and on the trigger "
                                "set of a marking key.", epilog=EPILOG, func=run)
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model written by `wmark embed`")
    p.add_argument("--mk", metavar="FILE", help="the marking key whose trigger set to score (DIR/mk.wmk)")
    add_data_arguments(p)
    p.add_argument("--split", choices=SPLITS, default="test", help="which split of the data set to score")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    model = load_model(checked_model(args, args.model))
    config = model.config
    task = task_from(args)
    check_fits(config, task, what=f"data set {task.name}")
    triggers, mk = trigger_set_from(args.mk, task) if args.mk else (None, None)
    if triggers is not None:
        check_fits(config, triggers, what=f"the trigger set of {args.mk}")
    model.to(pick_device(args.device))
    data = task.split(args.split)
    result = evaluate(model, data, triggers)

    marked = f", marked with vk {short_digest(config.vk_digest)}" if config.vk_digest else ", no watermark recorded"
    print(f"model             {args.model}: {config.describe()}{marked}")
    print(f"data              {task.name} {args.split} split, {len(data)} images")
    _print_score(args.split, result.test)
    if result.triggers is not None:
        assert mk is not None  # triggers are scored only when a key was given
        _print_score("query" if mk.margin else "trigger", result.triggers, f" of {args.mk}")
        if config.vk_digest not in (None, mk.vk_digest):
            print(f"note              the model records another key's vk digest; this key's is "
                  f"{short_digest(mk.vk_digest)}")
    if args.json:
        write_json_report(args, {
            "type": REPORT_TYPE,
            "version": REPORT_VERSION,
            "model": str(args.model),
            "model_digest": model_file_digest(args.model).hex(),
            "model_vk_digest": config.vk_digest.hex() if config.vk_digest else None,
            "key_vk_digest": mk.vk_digest.hex() if mk else None,
            "dataset": task.name,
            "split": args.split,
            "scores": result.test.to_json(),
            "triggers": result.triggers.to_json() if result.triggers else None,
        })
        if args.json != "-":
            print(f"wrote             {args.json}")
    return 0


def _print_score(name: str, score: Score, source: str = "") -> None:
    top5 = f", top-5 {score.top5:.4f}" if score.top5 is not None else ""
    print(f"{name + ' accuracy':<18}{score.accuracy:.4f}  ({score.correct}/{score.total}{source}){top5}")
