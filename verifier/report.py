"""A verdict a judge can read: one self-contained HTML page per audited transcript
(docs/design.md section 6, ``wmark-verifier report``).

The page is built only from what the audit established (an
:class:`~wmark.protocol.transcript.AuditReport`): a transcript that does not
audit gets a page that says so and shows nothing else of it, since its
contents are then unchecked claims.  Every string that came from a transcript
(model names, URLs, caveats, failure reasons, file names) is hostile input
and passes through :func:`html.escape`; the page carries no script, loads
nothing (images are ``data:`` URIs, the plot is inline SVG) and says so to
the browser with a Content-Security-Policy that forbids any fetch.  It shows
only what the transcript already reveals: the opened items, never anything
of the marking key.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wmark.protocol.hazmat.encoding import b64u_encode
from wmark.protocol.messages import ModelRef, Verdict
from wmark.protocol.patterns import item_images
from wmark.protocol.transcript import AuditReport, audit_checks
from wmark.protocol.transparency import format_time
from wmark.verifier.dispute import DisputeOutcome, LogTrust
from wmark.verifier.tailplot import tail_svg

# img-src data: only, no script at all, nothing else fetched: the browser
# itself refuses any request the page might (by a bug of ours) try to make.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
THUMBNAIL_PIXELS = 72
# A signed transcript may open up to 10,000 items of 3x512x512 (anyone can sign one
# with a key of their own): the page draws the first MAX_THUMBNAILS, RENDER_BATCH at
# a time, and lists the rest as text, so its time, memory and size stay bounded.
MAX_THUMBNAILS = 200
RENDER_BATCH = 16

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111; margin: 24px auto; max-width: 1180px; padding: 0 16px; }
.status { font-size: 20px; font-weight: 700; margin: 0 0 10px; }
.status.accepted { color: #075e07; } .status.rejected { color: #8a4b00; } .status.invalid { color: #c00; }
h2 { font-size: 16px; border-bottom: 1px solid #ccc; margin: 22px 0 8px; }
.claims { display: flex; gap: 24px; align-items: flex-start; }
.claim { flex: 1 1 0; min-width: 0; overflow-wrap: anywhere; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.item { width: 104px; border: 2px solid #ccc; border-radius: 4px; padding: 4px; text-align: center; font-size: 12px; }
.item.match { border-color: #2a8a2a; background: #f0faf0; } .item.miss { border-color: #c33; background: #fdf0f0; }
.item img { width: 72px; height: 72px; image-rendering: pixelated; display: block; margin: 0 auto 2px; }
table { border-collapse: collapse; max-width: 100%; } td, th { border: 1px solid #ddd; padding: 2px 6px;
  text-align: left; vertical-align: top; font-size: 13px; overflow-wrap: anywhere; }
th { min-width: 7em; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
svg.tailplot { max-width: 100%; height: auto; }
code, .mono { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
.ok { color: #075e07; } .bad { color: #c00; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  .claims { display: block; } .claim { page-break-after: always; }
  .claim:last-child { page-break-after: auto; }
  h2 { page-break-after: avoid; } .item, tr, svg { page-break-inside: avoid; }
  .checks { page-break-before: always; }
}
"""


@dataclass(frozen=True)
class Claim:
    """One transcript as the page shows it: audited (``report``) or ``invalid`` with the reason."""

    name: str                   # the file as the user named it
    sha256: bytes               # of the file's bytes, so the page names exactly what it was made from
    report: AuditReport | None = None
    invalid: str | None = None
    log_trust: LogTrust | None = None    # which log key checked the receipt, in words
    model_check: str | None = None  # what re-querying the model (or re-checking proofs) found


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(image: np.ndarray) -> str:
    """A C x H x W uint8 image as a PNG ``data:`` URI, scaled up by whole pixels."""
    from PIL import Image

    channels, height, width = image.shape
    pixels = image[0] if channels == 1 else np.moveaxis(image[:3], 0, -1)
    picture = Image.fromarray(np.ascontiguousarray(pixels), mode="L" if channels == 1 else "RGB")
    side = max(height, width)
    if side <= THUMBNAIL_PIXELS:  # small images grow by whole pixels, so each stays visible
        scale = THUMBNAIL_PIXELS // side
        picture = picture.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    else:  # large ones shrink: the page stays small whatever the key's input shape
        picture = picture.resize((max(1, width * THUMBNAIL_PIXELS // side), max(1, height * THUMBNAIL_PIXELS // side)),
                                 Image.Resampling.BOX)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def describe_model(model: ModelRef) -> str:
    if model.sha256 is not None:
        return f"the model file with SHA-256 {model.sha256.hex()}"
    return f"the model {model.name!r} served at {model.url}"


def verdict_word(verdict: Verdict) -> str:
    return "ACCEPTED" if verdict.accepted else "REJECTED"


def claim_sentence(report: AuditReport) -> str:
    v = report.verdict
    return (f"Owner {report.vk.owner.fingerprint} claims that {describe_model(v.model)} carries its watermark. "
            f"Verdict: {verdict_word(v)}, {v.matches} of {v.k} {'proven' if v.zk else 'opened'} trigger items "
            f"answered with their committed label (threshold {v.tau if v.tau is not None else 'none'}), "
            f"p-value {v.p_value}.")


def status_line(claim: Claim) -> tuple[str, str]:
    """The page's first line for one claim, and its CSS class."""
    if claim.report is None:
        return f"INVALID TRANSCRIPT {claim.name}: {claim.invalid}", "invalid"
    v = claim.report.verdict
    line = f"{verdict_word(v)}: valid transcript {claim.name}, {v.matches} of {v.k} matches, p-value {v.p_value}"
    return line, "accepted" if v.accepted else "rejected"


def _items_html(report: AuditReport) -> str:
    results = {r.index: r for r in report.verdict.results}
    if report.challenge.zk is not None:
        failures = {f.index: f.reason for f in report.verdict.zk.failures} if report.verdict.zk else {}
        rows = []
        for item in report.zk_items:
            r = results[item.index]
            counted = (f'<span class="ok">counted: proves class {r.predicted}'
                       f'{" (a match)" if r.match else " (not the label)"}</span>' if r.predicted is not None
                       else f'<span class="bad">not counted: {_e(failures.get(item.index, ""))}</span>')
            rows.append(f'<tr class="zkitem" data-index="{item.index}"><td>{item.index}</td><td>{item.label}</td>'
                        f'<td>{item.statement.predicted}</td><td class="mono">{item.statement.input_hash.hex()[:32]}…'
                        f'</td><td class="mono">{len(item.statement.proof)} bytes, SHA-256 '
                        f'{hashlib.sha256(item.statement.proof).hexdigest()[:16]}…</td><td>{counted}</td></tr>')
        return ('<p>Zero-knowledge verification: no trigger image was revealed. Each row is a proven statement: '
                'the model maps the hidden input whose Poseidon hash the key committed to for that item to the '
                'class shown.</p><table><tr><th>item</th><th>committed label</th><th>proven class</th>'
                '<th>hidden input hash</th><th>proof</th><th>result</th></tr>' + "".join(rows) + "</table>")
    shown = report.items[:MAX_THUMBNAILS]
    pictures = [png_data_uri(image) for start in range(0, len(shown), RENDER_BATCH)
                for image in item_images(shown[start:start + RENDER_BATCH], report.vk.input_shape)]
    cells = []
    for n, opened in enumerate(report.items):
        r = results[opened.index]
        cls = "match" if r.match else "miss"
        picture = (f'<img alt="trigger item {opened.index}" src="{pictures[n]}">' if n < len(pictures)
                   else "")
        cells.append(f'<div class="item {cls}" data-index="{opened.index}">{picture}<div>item {opened.index}</div>'
                     f'<div>label {opened.label}</div>'
                     f'<div>answer {r.predicted} {"&#10003;" if r.match else "&#10007;"}</div></div>')
    if len(pictures) < len(report.items):
        cells.insert(len(pictures), f'<p class="more">Items beyond the first {len(pictures)} without their '
                                    f'pictures (re-draw them with wmark-verifier audit --model).</p>')
    source = {"derived": "drawn from its VRF output", "margin": "taken from the key's query split"}.get(
        report.vk.kind.value, "the image as opened")
    return (f'<p>Each image is {source}; the border is green where the suspect model answered the committed '
            f'label, red where it did not.</p><div class="grid">' + "".join(cells) + "</div>")


def _statistics_html(verdict: Verdict) -> str:
    rows = [("k (items checked)", verdict.k), ("matches", verdict.matches),
            ("tau (matches needed)", verdict.tau if verdict.tau is not None else "none: k too small for lambda"),
            ("p0 (chance match of an unmarked model)", verdict.p0), ("lambda", f"{verdict.lam} bits"),
            ("p-value", f"{verdict.p_value} (2^-{verdict.neg_log2_p})")]
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f'<table class="stats">{table}</table><p>The p-value is the chance that a model not marked with this '
            f'key answers at least {verdict.matches} of {verdict.k} items with their labels. The curve is that '
            f'chance for every number of matches; the claim is accepted only at or beyond tau, where it is below '
            f'2^-{verdict.lam}.</p>'
            + tail_svg(verdict.k, verdict.p0, verdict.lam, verdict.tau, verdict.matches))


def _registration_html(claim: Claim, report: AuditReport) -> str:
    reg = report.verdict.registration
    if reg is None:
        return "<p>No registry receipt: nothing shows that this verification key existed before the dispute.</p>"
    rows = [("log key", f"SHA256:{reg.log_keyid}"), ("entry index", reg.index),
            ("registered at", f"{format_time(reg.time_ms)} (the log's signed clock)"),
            ("tree size", reg.tree_size), ("witnesses", "none: the receipt carries only the log's own signature"),
            ("trusted", claim.log_trust.text if claim.log_trust else "")]
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _checks_html(claim: Claim, report: AuditReport) -> str:
    checks = [(c, True) for c in audit_checks(report.challenge.zk is not None)]
    if claim.log_trust is not None:
        checks.append((claim.log_trust.text, claim.log_trust.trusted))
    if claim.model_check is not None:
        checks.append((claim.model_check, True))
    elif report.challenge.zk is not None:
        checks.append((("the proofs themselves were not re-checked: which of them failed is the verifier's word "
                        "(give --model and --srs to verify them again)"), False))
    else:
        checks.append((("the model was not re-queried: the answers are those the verifier signed (give --model "
                        "to ask it again)"), False))
    return '<ul>' + "".join(f'<li><span class="{"ok" if ran else ""}">{"passed" if ran else "not done"}</span>: '
                           f'{_e(text)}</li>' for text, ran in checks) + "</ul>"


def _caveats_html(claim: Claim, report: AuditReport) -> str:
    caveats = list(report.verdict.caveats)
    caveats.append(f"the key's creation time, {report.vk.created}, is the owner's own claim; only a registry "
                   f"receipt proves a time")
    if claim.model_check is None:
        caveats.append("this page re-checks the transcript, not the model: that the suspect gave these answers "
                       "rests on the verifier's signature until someone re-queries the model"
                       + (" and re-checks the proofs" if report.challenge.zk is not None else ""))
    return "<ul>" + "".join(f"<li>{_e(c)}</li>" for c in caveats) + "</ul>"


def recheck_commands(claim: Claim, report: AuditReport | None, log_keys: Sequence[str]) -> list[str]:
    audit = ["wmark-verifier", "audit", claim.name, *(a for key in log_keys for a in ("--log-key", key))]
    commands = [shlex.join(audit)]
    if report is not None and report.challenge.zk is not None:
        commands.append(shlex.join([*audit, "--model", "SUSPECT_DIR", "--srs", "SRS_FILE"]))
    elif report is not None:
        commands.append(shlex.join([*audit, "--model", "SUSPECT_DIR"]))
    commands.append(f"sha256sum {shlex.quote(claim.name)}   # expect {claim.sha256.hex()}")
    return commands


def _claim_html(claim: Claim, log_keys: Sequence[str]) -> str:
    report = claim.report
    commands = "\n".join(recheck_commands(claim, report, log_keys))
    recheck = f"<h2>How to re-check it</h2><pre class=\"mono\">{_e(commands)}</pre>"
    if report is None:
        return (f'<section class="claim invalid"><h2>{_e(claim.name)}</h2><p class="bad">This transcript does not '
                f'audit: {_e(claim.invalid)}. Nothing in it is shown, since none of it is checked.</p>'
                f'<p>File SHA-256 <span class="mono">{claim.sha256.hex()}</span></p>{recheck}</section>')
    v, vk = report.verdict, report.vk
    facts = [("owner key", vk.owner.fingerprint), ("verification key digest", vk.digest.hex()),
             ("trigger set", (f"{vk.n} {vk.kind.value} items, {vk.num_classes} classes, input "
                              f"{'x'.join(map(str, vk.input_shape))}, {vk.scheme.value} commitments")),
             ("suspect model", describe_model(v.model)), ("verifier key", report.challenge.verifier.fingerprint),
             ("challenge issued", report.challenge.issued), ("verdict signed", v.decided),
             ("transcript file", f"{claim.name}, SHA-256 {claim.sha256.hex()}"),
             ("chain digest", b64u_encode(v.chain_digest))]
    return (f'<section class="claim {"accepted" if v.accepted else "rejected"}"><h2>The claim</h2>'
            f'<p class="sentence">{_e(claim_sentence(report))}</p><table>'
            + "".join(f"<tr><th>{_e(k)}</th><td class=\"mono\">{_e(val)}</td></tr>" for k, val in facts)
            + f"</table><h2>The {v.k} checked items</h2>{_items_html(report)}"
            f"<h2>The statistics</h2>{_statistics_html(v)}"
            f"<h2>The registration</h2>{_registration_html(claim, report)}"
            f'<div class="checks"><h2>Every check made</h2>{_checks_html(claim, report)}</div>'
            f"<h2>Caveats</h2>{_caveats_html(claim, report)}{recheck}</section>")


def _dispute_html(claims: Sequence[Claim], dispute: DisputeOutcome | str) -> str:
    if isinstance(dispute, str):
        text = f"Undecided: {dispute}."
    elif dispute.earlier is None:
        text = f"Undecided: {dispute.reason}."
    else:
        winner = next(c for c in claims if c.name == dispute.earlier)
        owner = winner.report.vk.owner.fingerprint if winner.report else ""
        text = f"Earlier claim: {dispute.earlier}, owner {owner} ({dispute.reason})."
    rows = "".join(
        f"<tr><td>{_e(c.name)}</td><td>{_e(c.report.vk.owner.fingerprint)}</td>"
        f"<td>{verdict_word(c.report.verdict)}</td><td>{_e(_registered(c.report))}</td></tr>"
        for c in claims if c.report is not None)
    return (f'<h2>Which registration came first</h2><p class="dispute">{_e(text)}</p>'
            f"<table><tr><th>transcript</th><th>owner key</th><th>verdict</th><th>registered</th></tr>{rows}</table>")


def _registered(report: AuditReport) -> str:
    reg = report.verdict.registration
    return reg.describe() if reg is not None else "no registry receipt"


def render(claims: Sequence[Claim], *, log_keys: Sequence[str] = (),
           dispute: DisputeOutcome | str | None = None) -> str:
    """The HTML page for one claim, or two side by side with ``dispute``, the
    outcome of ordering them (or why they could not be ordered)."""
    lines = [status_line(c) for c in claims]
    worst = next((cls for _, cls in lines if cls == "invalid"), lines[0][1])
    first = " | ".join(text for text, _ in lines)
    title = "wmark verification report: " + ", ".join(c.name for c in claims)
    body = (f'<p class="status {worst}" id="status">{_e(first)}</p>'
            + (_dispute_html(claims, dispute) if dispute is not None else "")
            + '<div class="claims">' + "".join(_claim_html(c, log_keys) for c in claims) + "</div>"
            + "<footer><p>Written by wmark-verifier report. This page loads nothing and runs no script.</p></footer>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n")
