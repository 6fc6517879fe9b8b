"""The record of a run's config changes: which keys a resumed run changed, and at which step.

A resumed run may change any key outside ``model`` (``train.batch_size``, the
schedule, ...); ``params.yaml`` then holds only the newest config. Each such
resume appends one JSON line to ``params_changes.jsonl`` in the run directory::

    {"step": 21000, "changed": {"train.batch_size": [4, 8], "train.lr_decay_steps": [150000, 85000]}}

(``step``: the checkpoint the run resumed from, so the new values hold from that
step on; ``changed``: dotted key -> ``[before, after]``.) With it, the run's
config at its start can be rebuilt (:func:`dotted_initial_params`), e.g. for a model
card's reproduction command.

A run warm-started from another model (``train.py --init_from``) records where its
first weights came from in ``warm_start.json``::

    {"init_from": "/abs/path/to/model", "step": 21000, "continue_run": false, "weights_sha256": "..."}

(``step``: the source model's training step when it carries a ``training_state.json``,
else null; ``weights_sha256``: of its ``weights.npz``, when it has one.) Following these
records back from run to run gives a model's lineage (``scripts/ship_model.py`` writes it
into the model card).
"""

from __future__ import annotations

import dataclasses
import json
import os

from tfwaveglow.config import Params

PARAMS_CHANGES_FILE = "params_changes.jsonl"
WARM_START_FILE = "warm_start.json"
# Sections a resumed run may change (the model must stay the same).
CHANGEABLE_SECTIONS = ("audio", "data", "train", "export", "loss", "spectral", "adversarial")


def dotted(params: Params, sections=CHANGEABLE_SECTIONS) -> dict:
    """``{"train.batch_size": 8, "model.wn.n_layers": 7, ...}`` for the given sections."""
    flat = {}

    def walk(prefix, values):
        for key, value in values.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    for section in sections:
        walk(f"{section}.", dataclasses.asdict(getattr(params, section)))
    return flat


def params_changes(before: Params, after: Params) -> dict:
    """``{dotted key: [before, after]}`` for every key outside ``model`` that differs."""
    old, new = dotted(before), dotted(after)
    return {key: [old[key], new[key]] for key in old if old[key] != new[key]}


def record_params_change(model_dir: str, step: int, before: Params, after: Params) -> dict:
    """Appends the change from ``before`` to ``after`` at ``step`` (if any); returns the changed keys."""
    changed = params_changes(before, after)
    if changed:
        with open(os.path.join(model_dir, PARAMS_CHANGES_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": int(step), "changed": changed}) + "\n")
    return changed


def read_params_changes(model_dir: str) -> list[dict]:
    """The run's recorded changes, oldest first (``[]`` when it has none).

    Raises:
      ValueError: a line is not a change record (names the file and the line).
    """
    path = os.path.join(model_dir, PARAMS_CHANGES_FILE)
    if not os.path.isfile(path):
        return []
    changes = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step, changed = int(record["step"]), dict(record["changed"])
                if not all(isinstance(v, list) and len(v) == 2 for v in changed.values()):
                    raise ValueError("each change must be [before, after]")
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}, line {number}: not a params change record ({e}): {line.strip()!r}") from e
            changes.append({"step": step, "changed": changed})
    return sorted(changes, key=lambda c: c["step"])


def dotted_initial_params(params: Params, changes: list[dict]) -> dict:
    """The run's dotted config (:func:`dotted`, ``model`` included) before its first recorded change.

    ``params`` is the newest config and ``changes`` are oldest first (as
    :func:`read_params_changes` returns them; two resumes from one checkpoint
    keep their file order); every change is undone, newest first.
    """
    values = dotted(params, ("model",) + CHANGEABLE_SECTIONS)
    for change in reversed(changes):
        for key, (before, _) in change["changed"].items():
            values[key] = before
    return values


def examples_trained(params: Params, changes: list[dict], step: int) -> int:
    """Training examples (segments, all replicas) seen up to ``step``, across batch-size changes.

    ``train.batch_size`` is the global batch; each recorded change of it holds
    from its step on, so the steps before the first change ran at the batch
    the run started with. ``changes`` are oldest first (:func:`read_params_changes`).
    """
    batch = dotted_initial_params(params, changes)["train.batch_size"]
    seen, start = 0, 0
    for change in changes:
        if change["step"] >= step:
            break
        if "train.batch_size" in change["changed"]:
            seen += (change["step"] - start) * batch
            start, batch = change["step"], change["changed"]["train.batch_size"][1]
    return seen + (step - start) * batch


def record_warm_start(
    model_dir: str, init_from: str, step: int | None, continue_run: bool, weights_sha256: str | None = None
) -> str:
    """Writes ``warm_start.json``: the run's first weights came from ``init_from`` (at its ``step``).

    ``weights_sha256`` (of the source's ``weights.npz``) identifies the weights even after the
    directory they were in has been overwritten, e.g. a shipped model replaced by a newer one.
    """
    path = os.path.join(model_dir, WARM_START_FILE)
    record = {"init_from": os.path.abspath(init_from), "step": step, "continue_run": bool(continue_run)}
    if weights_sha256:
        record["weights_sha256"] = weights_sha256
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return path


def read_warm_start(model_dir: str) -> dict | None:
    """The run's warm-start record (None for a run that started from fresh weights).

    Returns:
      ``{"init_from": str, "step": int | None, "continue_run": bool, "weights_sha256": str | None}``.

    Raises:
      ValueError: the file is not a warm-start record (names the file).
    """
    path = os.path.join(model_dir, WARM_START_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        step = record.get("step")
        return {
            "init_from": str(record["init_from"]),
            "step": None if step is None else int(step),
            "continue_run": bool(record.get("continue_run", False)),
            "weights_sha256": record.get("weights_sha256"),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a warm-start record ({e!r})") from e
