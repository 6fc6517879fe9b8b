"""Shared fixtures: the shipped speech clips and the default audio params."""

import glob
import os

import pytest

SPEECH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "speech")


@pytest.fixture(scope="session")
def speech_dir() -> str:
    """Directory of real speech clips: ``female/*.ogg`` and ``male/*.ogg`` (22.05 kHz mono, GPL-2)."""
    return SPEECH_DIR


@pytest.fixture(scope="session")
def speech_clips() -> list[str]:
    """Paths of the six shipped clips, sorted (three per speaker)."""
    clips = sorted(glob.glob(os.path.join(SPEECH_DIR, "*", "*.ogg")))
    assert len(clips) == 6, f"expected six clips under {SPEECH_DIR}, found {len(clips)}"
    return clips
