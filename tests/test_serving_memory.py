"""Served synthesis memory is flat in the request's length (benchmarks/serving_memory.py, fresh processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_served_synthesis_memory_is_flat_in_the_length_of_a_ten_minute_request():
    """configs/small.yaml (12 flows, WN 8 x 32) exported; ``synthesize`` on 10 s and on 10 min in fresh processes.

    One-shot synthesis holds activations of every WN layer over the whole request (hundreds of
    copies of the audio's length for this model: gigabytes for 10 minutes); windowed synthesis
    holds one window's, plus a few full-length copies of the latent and the audio.
    """
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "serving_memory.py"),
           "--params", os.path.join(ROOT, "configs", "small.yaml"), "--seconds", "10,600"]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=3600).stdout
    seed_check, short, long = (json.loads(line) for line in out.strip().splitlines()[:3])
    assert seed_check["max_relative_difference"] <= 1e-4
    assert short["audio_seconds"] == pytest.approx(10, abs=0.02) and long["audio_seconds"] == pytest.approx(
        600, abs=0.02
    )
    audio_mib = long["output_samples"] * 4 / 2**20  # 50 MiB of float32 audio
    growth = long["peak_rss_mib"] - short["peak_rss_mib"]
    assert growth < 8 * audio_mib, (short, long)
    assert long["peak_rss_mib"] < 3 * 1024
