"""The run scripts' shared shell helpers (scripts/link_heldout.sh)."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK_HELDOUT = os.path.join(ROOT, "scripts", "link_heldout.sh")


def _corpus(tmp_path, ids):
    corpus = tmp_path / "corpus"
    for name in ids:
        wav = corpus / "audio" / f"{name}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.write_bytes(name.encode())  # content only identifies the file
    (corpus / "valid.txt").write_text("".join(f"{name}\n" for name in ids))
    return corpus


def test_links_the_first_held_out_utterances_in_list_order(tmp_path):
    ids = ["female/a", "male/b", "female/c"]
    corpus = _corpus(tmp_path, ids)
    out = tmp_path / "heldout"
    subprocess.run(["bash", LINK_HELDOUT, str(corpus), str(out), "2"], check=True)
    linked = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert linked == ["female/a.wav", "male/b.wav"]
    assert (out / "female" / "a.wav").is_symlink()
    assert (out / "male" / "b.wav").read_bytes() == b"male/b"
    # Zero links the whole list; running again replaces the links.
    subprocess.run(["bash", LINK_HELDOUT, str(corpus), str(out), "0"], check=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.wav")) == ["female/a.wav", "female/c.wav", "male/b.wav"]


def test_a_listed_utterance_without_audio_is_named(tmp_path):
    corpus = _corpus(tmp_path, ["female/a"])
    with open(corpus / "valid.txt", "a") as f:
        f.write("male/gone\n")
    result = subprocess.run(
        ["bash", LINK_HELDOUT, str(corpus), str(tmp_path / "out"), "0"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "male/gone" in result.stderr and "missing" in result.stderr


def test_a_relative_corpus_path_gives_links_that_resolve(tmp_path):
    _corpus(tmp_path, ["female/a"])
    out = tmp_path / "runs" / "heldout"
    subprocess.run(["bash", LINK_HELDOUT, "corpus", str(out), "0"], check=True, cwd=tmp_path)
    assert (out / "female" / "a.wav").read_bytes() == b"female/a"
