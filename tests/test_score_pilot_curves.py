"""scripts/score_pilot_curves.py: which checkpoints a pilot's curve scores."""

from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "score_pilot_curves.py")
_spec = importlib.util.spec_from_file_location("score_pilot_curves", SCRIPT)
score_pilot_curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score_pilot_curves)


def test_the_first_checkpoint_past_each_mark_and_the_last_are_scored():
    # A checkpoint every 250 steps at 0.75 CPU-s a step; marks every 900 CPU-s; the run's budget
    # ended at step 4808, between two training rows, where only a validation row holds its time.
    rows = [{"step": s, "cpu_seconds": 0.75 * s} for s in range(50, 4801, 50)]
    rows.append({"step": 4808, "cpu_seconds": 3600.0})
    saved = {s: f"ckpt-{s}" for s in [*range(250, 4801, 250), 4808]}
    points = score_pilot_curves.points_to_score(rows, saved, 900.0)
    # 900 s is reached at step 1200 -> ckpt 1250; 1800 s at 2400 -> 2500; 2700 s at 3600 -> 3750.
    assert [step for step, _ in points] == [1250, 2500, 3750, 4808]
    assert points[-1][1] == 3600.0
    # A mark passed twice by one long gap between checkpoints is scored once.
    sparse = {1250: "a", 4808: "b"}
    assert [step for step, _ in score_pilot_curves.points_to_score(rows, sparse, 900.0)] == [1250, 4808]
