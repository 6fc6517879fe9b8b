"""The text a shipped model carries: its model card and the README of its samples.

Pure text from what :mod:`ship_model` gathers (the run's config, steps and clocks, the demo's
scores, the model's lineage); nothing here reads checkpoints or runs a model.

A card's reproduction is a list of shell commands: make the corpus, take the model the lineage
starts from out of git (when it was a committed model), then one ``train.py`` call per run of
the lineage and per recorded config change of each run (``params_changes.jsonl``), each run
warm-started from the one before (``--init_from=<run>/inference``).
"""

from __future__ import annotations

import dataclasses
import os
import shlex

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)

# The markers around a card's evaluation section (kept when a model is shipped again without a report).
EVALUATION_BEGIN = "<!-- evaluation:begin -->"
EVALUATION_END = "<!-- evaluation:end -->"
# Sections whose keys a reproduction command sets (``audio`` and ``export`` are the model's, not training's).
TRAINING_SECTIONS = ("model", "data", "train", "loss", "spectral", "adversarial")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Training data a card can name: where it lives, what it is, and how to make it.

    Attributes:
      name: the ``--corpus`` value of ``scripts/ship_model.py``.
      directory: the corpus directory the reproduction's ``train.py`` calls read.
      summary: a few words for the card's first paragraph.
      description: the Data section's text (markdown).
      voices: who the model heard, for the card's intended-use section.
      make: the shell commands that make ``directory``.
      packages: the Debian packages the recordings come from (their licences).
    """

    name: str
    directory: str
    summary: str
    description: str
    voices: str
    make: tuple[str, ...]
    packages: tuple[str, ...] = ("fillets-ng-data-cs",)


_FISH_FILLETS_TEXT = """The Debian package `fillets-ng-data-cs` (Czech voice acting of Fish Fillets – Next Generation,
22.05 kHz mono): two speakers, the small fish (female, files `*-m-*`) and the big fish (male,
`*-v-*`), about 69 minutes in 1238 utterances. Split by `preprocess_data.py` (valid fraction
0.05, seed 1234): **1176 training and 62 held-out validation utterances** (`corpus/train.txt`,
`corpus/valid.txt`); both speakers in both. `examples/` holds four of the held-out utterances."""

FISH_FILLETS = Corpus(
    name="fishfillets",
    directory="corpus",
    summary="the Czech voices of the game Fish Fillets – Next Generation",
    description=_FISH_FILLETS_TEXT,
    voices="Czech speech of these two voices",
    make=("scripts/get_corpus.sh      # downloads fillets-ng-data-cs with apt-get, preprocesses into corpus/",),
)
FISH_FILLETS_AND_TUX_PAINT = Corpus(
    name="fishfillets_tuxpaint",
    directory="corpus_plus",
    summary=(
        "the Czech voices of the game Fish Fillets – Next Generation and eight voices of Tux Paint's "
        "spoken stamp descriptions"
    ),
    description=_FISH_FILLETS_TEXT
    + """

Added to its training split: the spoken stamp descriptions of Tux Paint (Debian package
`tuxpaint-stamps-default`, GPL-2; short phrases, about one speaker per language) that pass the
checks of `scripts/get_extra_voices.py` (`docs/data.md`): eight voices (Belarusian, Bulgarian,
Catalan, Danish, Greek, French, Romanian, Russian), 4572 training and 240 validation utterances.
`corpus_plus/` holds both corpora under the same split, so **the 62 Fish Fillets held-out
utterances stay held out**; its `valid.txt` adds the 240 Tux Paint ones.""",
    voices="speech of these two Czech voices (and of the eight Tux Paint voices it also heard)",
    make=FISH_FILLETS.make
    + (
        "python scripts/get_extra_voices.py --dest=voices --corpus=corpus     # Tux Paint voices (apt-get download)",
        "python preprocess_data.py --wave_dir=voices/all_wavs --mel_dir=corpus_plus/mels --data_dir=corpus_plus",
    ),
    packages=("fillets-ng-data-cs", "tuxpaint-stamps-default"),
)
CORPORA = {corpus.name: corpus for corpus in (FISH_FILLETS, FISH_FILLETS_AND_TUX_PAINT)}


@dataclasses.dataclass(frozen=True)
class Origin:
    """The model a lineage starts from (a shipped model or any other loadable one).

    Attributes:
      path: where it was loaded from.
      step: its training step (from its ``training_state.json``), None if unknown.
      hours: its training clock in hours, None if unknown.
      commit: the git commit of this repository holding it, None when it is not a committed model.
      repo_path: its path inside the repository at ``commit``.
    """

    path: str
    step: int | None = None
    hours: float | None = None
    commit: str | None = None
    repo_path: str | None = None


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a lineage, up to the checkpoint that the next run (or the card) took.

    Attributes:
      params: the run's newest config.
      steps: the step of that checkpoint.
      hours: the run's training clock there (hours).
      changes: its ``params_changes.jsonl`` records, oldest first.
      continued_from: the step of its own shipped model it carried on from (0: none).
    """

    params: object
    steps: int
    hours: float
    changes: tuple = ()
    continued_from: int = 0

    def stopped_by_budget(self) -> bool:
        """Whether the run ended on its CPU-time budget rather than at ``train.steps``."""
        t = self.params.train
        return t.cpu_seconds_budget > 0 and self.steps < t.steps


def architecture(params, parameters: int) -> str:
    """One sentence on the flow's layout: flows, group size, WN, conditioning, parameter count."""
    m = params.model
    hop = params.audio.hop_length
    steps_per_frame = hop // m.n_group if hop % m.n_group == 0 else None
    rate = (
        f"{m.n_group}-sample groups ({'one' if steps_per_frame == 1 else steps_per_frame} per mel frame)"
        if steps_per_frame
        else f"{m.n_group}-sample groups"
    )
    wn = f"WN {m.wn.n_layers} layers × {m.wn.n_channels} channels" + (
        " (depthwise-separable)" if m.wn.separable else ""
    )
    if m.upsampler == "transposed_conv":
        cond = f"NVIDIA's transposed-conv upsampler ({m.upsample_kernel_size} taps)"
    else:
        context = f"{m.frame_context} frame{'s' if m.frame_context != 1 else ''} of context either side"
        cond = f"the mel repeated to the group rate with {context}"
    return f"{m.n_flows} flows of {rate}, {wn}, {cond}; {parameters:,} parameters"


def precision(train) -> str:
    """How the run computed: float32, or the mixed-precision dtype."""
    if train.mixed_precision in (False, "float32"):
        return "float32"
    if train.mixed_precision is True:
        return "float32 on a CPU (`mixed_precision: true` applies on a GPU only)"
    return f"{train.mixed_precision} mixed precision"


def _value(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def examples_table(summary: dict, link_prefix: str = "") -> str:
    """Markdown table of the demo's per-file scores (WaveGlow, + denoiser, Griffin-Lim) and means."""
    from tfwaveglow import demo

    systems = demo.SYSTEMS
    titles = [demo.SYSTEM_TITLES[s] for s in systems]
    metrics = [("log_mel_distance", "log-mel dist. ↓", 3), ("stoi", "STOI ↑", 3), ("pesq_wb", "PESQ-WB ↑", 2)]
    header = ["utterance", "seconds"] + [f"{label} {title}" for _, label, _ in metrics for title in titles]
    lines = ["| " + " | ".join(header) + " |", "| --- | " + " | ".join(["---:"] * (len(header) - 1)) + " |"]
    for entry in summary["files"]:
        name = f"[`{entry['output_dir']}`]({link_prefix}{entry['output_dir']}/)" if link_prefix else entry["file"]
        cells = [name, f"{entry['seconds']:.2f}"]
        cells += [_value(entry["metrics"][s][m], d) for m, _, d in metrics for s in systems]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**mean**", f"{summary['total_seconds_of_audio']:.2f}"]
    cells += [f"**{_value(summary['average'][s][m]['mean'], d)}**" for m, _, d in metrics for s in systems]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def samples_readme(summary: dict, info: dict) -> str:
    from tfwaveglow import demo

    rows = "\n".join(f"| `<utterance>/{name}` | {text} |" for name, text in summary["outputs"].items())
    return f"""# Samples of the shipped model

Copy synthesis of the four held-out utterances of `examples/` (never seen in training) by
the shipped model `{info["model_dir"]}` ({info["steps"]} training steps, float16 weights),
made by `scripts/ship_model.py`, which runs

```bash
python -m tfwaveglow.demo --model={info["model_dir"]} \\
    --input_dir={info["examples_dir"]} --output_dir={info["samples_dir"]}
```

(sigma {summary["sigma"]:g}, `waveglow_denoised.wav` at denoiser strength {summary["denoiser_strength"]:g},
seed {summary["seed"]}, Griffin-Lim {summary["griffin_lim_iterations"]} iterations). Every wav is 22.05 kHz mono
16-bit PCM.

| file | what it is |
| --- | --- |
{rows}
| `{demo.SUMMARY_NAME}` | settings, per-file scores against the original, means |

Scores against the original (copy synthesis from its mel; ↓ lower is better, ↑ higher):

{examples_table(summary, link_prefix="./")}

The utterances are from the Fish Fillets NG Czech voice pack (`fillets-ng-data-cs`), GPL-2:
see `examples/README.md` and `examples/LICENSE`; the outputs here are derived from them and
carry the same licence.
"""


def _override(key: str, value) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, (list, tuple)):
        value = "[" + ",".join(str(v) for v in value) + "]"
    return f"{key}={value}"


def reproduce_overrides(params, steps: int, config_paths: list[str]) -> list[str]:
    """``--params_override`` entries that turn the layered configs into the run's config, trained to ``steps``.

    Every key of :data:`TRAINING_SECTIONS` whose value in ``params`` (a
    config, or its dotted form from :func:`tfwaveglow.training.dotted_initial_params`)
    differs from the config files' (``config_paths``, relative to the repository,
    layered in order), with ``train.steps`` set to ``steps``.
    """
    import tfwaveglow
    from tfwaveglow.training import params_history

    sections = TRAINING_SECTIONS
    ours = params if isinstance(params, dict) else params_history.dotted(params, sections)
    base = tfwaveglow.load_params([os.path.join(ROOT, path) for path in config_paths])
    theirs = params_history.dotted(base, sections)
    entries = [f"train.steps={steps}"]
    for key, value in theirs.items():
        if key != "train.steps" and ours[key] != value:
            entries.append(_override(key, ours[key]))
    return entries


def reproduce_stages(params, steps: int, config_paths: list[str], changes: list[dict]) -> list[dict]:
    """The ``train.py`` runs that replay the run to ``steps``, config changes included.

    Args:
      params: the run's newest config.
      steps: the shipped checkpoint's step.
      config_paths: the layered configs the first run starts from.
      changes: the run's ``params_changes.jsonl`` records (oldest first); those
        at or after ``steps`` did not shape the checkpoint and are left out.

    Returns:
      One dict per ``train.py`` run: ``overrides`` (``--params_override``
      entries; the first run's relative to ``config_paths``, each later one's
      the keys changed at its start) and ``stop`` (its ``--steps``, None for the
      last, which ends at ``train.steps = steps``).
    """
    from tfwaveglow.training import params_history

    first = params_history.dotted_initial_params(params, changes)
    changes = [c for c in changes if c["step"] < steps]
    stages = [{"overrides": reproduce_overrides(first, steps, config_paths), "stop": None}]
    for change in changes:
        stages[-1]["stop"] = change["step"]
        entries = [_override(k, after) for k, (_, after) in change["changed"].items() if k != "train.steps"]
        stages.append({"overrides": entries, "stop": None})
    return stages


def reproduce_commands(
    stages: list[dict],
    config_paths: list[str],
    continued_from: int = 0,
    *,
    model_dir: str = "runs/ship",
    init_from: str | None = None,
    corpus_dir: str = "corpus",
) -> str:
    """The shell commands of :func:`reproduce_stages`' runs, one ``train.py`` call each.

    The first call starts ``model_dir`` (from ``init_from``'s weights when given); each later one
    resumes it with the keys its stage changed. With ``continued_from``
    (:func:`ship_model.checkpoint_continued_from`), the run carried on from a model shipped at that
    step: the commands first train a run to that step and ship it, then train the run that
    carries it on (``--init_from --continue_run``) into ``model_dir``.
    """

    def train(directory: str) -> str:
        return (
            f"python train.py --filelist={corpus_dir}/train.txt --valid_filelist={corpus_dir}/valid.txt \\\n"
            f"    --wave_dir={corpus_dir}/audio --lc_dir={corpus_dir}/mels --model_dir={directory}"
        )

    def overrides(entries) -> list[str]:
        return [f"    {shlex.quote(f'--params_override={entry}')}" for entry in entries]

    configs = "    " + " ".join(f"--params={path}" for path in config_paths)
    commands = []
    if continued_from:
        first, shipped = f"{model_dir}_first", f"{model_dir}_step{continued_from}"
        lines = [train(first), configs]
        if init_from:
            lines.append(f"    --init_from={init_from}")
        lines += overrides(stages[0]["overrides"])
        commands.append(" \\\n".join([*lines, f"    --steps={continued_from}"]))
        commands.append(
            f"python scripts/ship_model.py --run_dir={first} --checkpoint={first}/checkpoints/ckpt-{continued_from} "
            f"\\\n    --output_dir={shipped} --samples_dir="
        )
    for index, stage in enumerate(stages):
        lines = [train(model_dir)]
        if index == 0:
            lines.append(configs)
            if continued_from:
                lines.append(f"    --init_from={model_dir}_step{continued_from} --continue_run")
            elif init_from:
                lines.append(f"    --init_from={init_from}")
        lines += overrides(stage["overrides"])
        if stage["stop"] is not None:
            lines.append(f"    --steps={stage['stop']}")
        commands.append(" \\\n".join(lines))
    return "\n".join(commands)


def reproduce_lineage(origin: Origin | None, runs: list[Run], config_paths: list[str], corpus: Corpus) -> str:
    """Every command from a fresh clone to the shipped model's run (``runs/ship``), lineage included.

    Each run before the last trains into ``runs/ship_stage<i>`` from the inference weights of
    the one before (the first from ``origin``), all from the same layered ``config_paths``
    with overrides for what differs.
    """
    commands = list(corpus.make)
    init_from = None
    if origin is not None and origin.commit and origin.repo_path:
        commands.append(
            f"mkdir -p runs/origin && git archive {origin.commit} {origin.repo_path} | tar -x -C runs/origin"
        )
        init_from = f"runs/origin/{origin.repo_path}"
    elif origin is not None:
        init_from = origin.path
    for index, run in enumerate(runs):
        last = index == len(runs) - 1
        model_dir = "runs/ship" if last else f"runs/ship_stage{index + 1}"
        stages = reproduce_stages(run.params, run.steps, config_paths, list(run.changes))
        commands.append(
            reproduce_commands(
                stages,
                config_paths,
                run.continued_from,
                model_dir=model_dir,
                init_from=init_from,
                corpus_dir=corpus.directory,
            )
        )
        init_from = f"{model_dir}/inference"
    return "\n".join(commands)


def continued_text(continued_from: int) -> str:
    """The Training section's sentence on a run carried on from a shipped model (empty if not)."""
    if not continued_from:
        return ""
    return (
        f" The run carried on from its own weights shipped at step {continued_from} (float16; "
        "`train.py --init_from --continue_run`): the step, data order, learning-rate schedule and "
        f"training clock went on from there, and Adam's moments restarted at step {continued_from} "
        "with a fresh warm-up."
    )


def changes_text(changes: list[dict], steps: int) -> str:
    """One sentence per recorded config change before ``steps`` (empty when none)."""
    lines = []
    for change in changes:
        if change["step"] < steps:
            keys = ", ".join(f"`{k}` {before} → {after}" for k, (before, after) in change["changed"].items())
            lines.append(f"from step {change['step']}: {keys}")
    if not lines:
        return ""
    return "\n\nChanged on resume (the run's `params_changes.jsonl`): " + "; ".join(lines) + "."


def objective_text(params) -> str:
    """The training objective in words, e.g. ``0.1 × NLL + 1 × multi-resolution STFT + 1 × log-mel L1, ...``."""
    names = (
        ("nll", "NLL"),
        ("stft", "multi-resolution STFT"),
        ("mel", "log-mel L1"),
        ("adv", "least-squares adversarial"),
        ("fm", "feature matching"),
    )
    weights = {key: getattr(params.loss, key) for key, _ in names}
    if not any(weight for key, weight in weights.items() if key != "nll"):
        return "maximum likelihood (WaveGlow's NLL)"
    text = " + ".join(f"{weights[key]:g} × {name}" for key, name in names if weights[key])
    text += f", the terms after the NLL on reverse-pass samples at sigma {params.spectral.sigma:g}"
    if params.spectral.every > 1:
        text += f" every {params.spectral.every}th step"
    return text


def schedule_text(train) -> str:
    """Batch, optimizer, learning-rate rule and divergence guard in a few words."""
    text = f"batch {train.batch_size}, Adam at {train.learning_rate:g}"
    if train.lr_schedule != "constant":
        span = "the run's CPU-time budget" if train.lr_decay_over == "cpu_budget" else f"{train.lr_decay_steps} steps"
        text += f", {train.lr_schedule} decay to {train.lr_decay_rate:g}× over {span}"
    if train.lr_plateau_patience > 0:
        text += f", × {train.lr_plateau_factor:g} on plateaus of the validation `{train.lr_plateau_metric}`"
    if train.guard_factor > 0:
        text += ", divergence guard on"
    return text


def lineage_text(origin: Origin | None, runs: list[Run]) -> str:
    """The Training section's list of where the weights came from, oldest first (empty for one fresh run)."""
    if origin is None and len(runs) <= 1:
        return ""
    items = []
    if origin is not None:
        if origin.commit:
            where = f"`{origin.repo_path}` as committed in `{origin.commit}` (its own card tells how it was trained)"
        else:
            where = f"`{origin.path}`"
        step = f" at step {origin.step}" if origin.step is not None else ""
        hours = f", {origin.hours:.1f} h" if origin.hours is not None else ""
        items.append(f"the model {where}{step}{hours};")
    for index, run in enumerate(runs):
        last = index == len(runs) - 1
        stop = "; stopped by its CPU-time budget" if run.stopped_by_budget() else ""
        which = "this run" if last else "a run"
        items.append(
            f"{which}: {run.steps} steps ({run.hours:.1f} h) of {objective_text(run.params)}; "
            f"{schedule_text(run.params.train)}{stop}{'.' if last else ';'}"
        )
    listed = "\n".join(f"{number}. {item}" for number, item in enumerate(items, 1))
    return (
        "\n\nEach step below started from the weights the one before ended with (`train.py --init_from`, "
        "a fresh optimizer):\n\n" + listed
    )


def model_card(
    info: dict,
    params,
    record: dict,
    summary: dict | None,
    evaluation: str,
    config_paths: list[str],
    changes: list[dict] = (),
    *,
    origin: Origin | None = None,
    earlier_runs: tuple[Run, ...] = (),
    corpus: Corpus = FISH_FILLETS,
) -> str:
    """The card's markdown.

    Args:
      info: what ``ship_model.ship`` measured (model dir, steps, size, SNR, parameters, ...).
      params: the shipped config.
      record: the run's training record (``ship_model.training_record``).
      summary: the demo's summary of the examples, None when not run.
      evaluation: the Evaluation section's markdown.
      config_paths: the layered configs every reproduction ``train.py`` call starts from.
      changes: the run's ``params_changes.jsonl`` records.
      origin, earlier_runs: the lineage before this run (``ship_model.lineage``), oldest first.
      corpus: the training data.
    """
    import yaml

    model_yaml = yaml.safe_dump({"model": dataclasses.asdict(params.model)}, sort_keys=False).strip()
    t = params.train
    train_keys = ("batch_size", "learning_rate", "lr_schedule", "lr_warmup_steps")
    if t.lr_schedule != "constant":
        train_keys += ("lr_decay_start", "lr_decay_steps", "lr_decay_rate")
    train_keys += ("sigma", "weight_norm")
    train_yaml = yaml.safe_dump({"train": {k: getattr(t, k) for k in train_keys}}, sort_keys=False).strip()
    if objective_text(params) != objective_text(type(params)()):
        objective = {"loss": dataclasses.asdict(params.loss), "spectral": dataclasses.asdict(params.spectral)}
        train_yaml += "\n" + yaml.safe_dump(objective, sort_keys=False, default_flow_style=None).strip()
    segment = params.data.segment_length
    order = "deterministic" if t.deterministic else "shuffled"
    valid_nll = (
        f"**{record['valid_nll']:.3f}** (step {record['valid_step']}; best {record['valid_best'][1]:.3f} at step "
        f"{record['valid_best'][0]})"
        if record["valid_nll"] is not None
        else "not recorded"
    )
    if summary is not None:
        examples = (
            "Copy synthesis of the four held-out utterances in `examples/` (from their mels; the audio is in "
            f'`samples/`; sigma {summary["sigma"]:g}, the "+ denoiser" columns at strength '
            f"{summary['denoiser_strength']:g}):\n\n" + examples_table(summary)
        )
    else:
        examples = "Not run (`--samples_dir=''`)."
    train_from, train_to = record["train_steps"]
    changes = list(changes)
    continued_from = info.get("continued_from", 0)
    this_run = Run(params, info["steps"], record["hours"], tuple(changes), continued_from)
    runs = [*earlier_runs, this_run]
    commands = reproduce_lineage(origin, runs, config_paths, corpus)
    history = continued_text(continued_from) + changes_text(changes, info["steps"]) + lineage_text(origin, runs)
    total_hours = record["hours"] + sum(run.hours for run in earlier_runs) + ((origin and origin.hours) or 0.0)
    hours = f"{record['hours']:.2f} h wall clock on 2 CPU cores (from `metrics.csv`, stops left out)"
    if total_hours > record["hours"]:
        hours += f"; {total_hours:.2f} h with the runs it started from (Training)"
    configs = ", ".join(f"`{path}`" for path in config_paths)
    start = "from scratch " if origin is None and not earlier_runs else ""
    copyright = ", ".join(f"`/usr/share/doc/{package}/copyright`" for package in corpus.packages)
    quality = "expect hiss and buzz, clearly worse than NVIDIA's published model"
    if summary is not None:
        system = "waveglow_denoised" if params.export.denoiser_strength > 0 else "waveglow"
        means = {
            m: {k: summary["average"][k][m]["mean"] for k in summary["average"]} for m in ("log_mel_distance", "stoi")
        }
        waveglow, baseline = means["log_mel_distance"][system], means["log_mel_distance"]["griffin_lim"]
        if waveglow is not None and baseline is not None and waveglow > baseline:
            stoi = means["stoi"]
            quality = (
                "on the examples its output is still further from the original than the Griffin-Lim "
                f"baseline's (log-mel distance {waveglow:.2f} against {baseline:.2f}, STOI "
                f"{_value(stoi[system], 3)} against {_value(stoi['griffin_lim'], 3)})"
            )
    return f"""# Model card: `fishfillets_cs` WaveGlow vocoder

A WaveGlow vocoder (mel spectrogram → 22.05 kHz speech) trained {start}with tfwaveglow on
{corpus.summary}. Small enough to train on a CPU:
{architecture(params, info["parameters"])} (NVIDIA's published model: 12 flows of 8-sample
groups, WN 8 × 256, about 88 M).

| | |
| --- | --- |
| files | `params.yaml` (the run's resolved config), `weights.npz` (float16, weight norm folded) |
| size | {info["megabytes"]:.1f} MB (`params.yaml` + `weights.npz`; float16 on disk, float32 once loaded) |
| float16 storage | output SNR {info["snr_db"]:.1f} dB against float32 (same latent, `{info["snr_example"]}`) |
| training steps | {info["steps"]} (checkpoint `{info["checkpoint_name"]}`) |
| training time | {hours} |
| validation NLL | {valid_nll} |
| training NLL | {record["train_nll"]:.3f} (mean of the rows logged at steps {train_from}–{train_to}) |
| synthesis defaults | sigma {params.export.sigma:g}, denoiser strength {params.export.denoiser_strength:g} |

NLL is WaveGlow's loss per audio sample (σ = 1, no Gaussian constant; lower is better; NVIDIA's
LJSpeech model reaches about −5.5 to −6).

## Use

```bash
make demo                                    # copy synthesis of examples/ into demo_output/
python -m tfwaveglow.demo --input_dir=my_wavs --output_dir=out
python synthesize.py --model=models/fishfillets_cs --mel=mel.npy --output_dir=out
```

```python
import tfwaveglow
model = tfwaveglow.load_model("models/fishfillets_cs")   # float32 variables
audio = model.infer(mel, sigma=0.6)                      # mel [1, frames, 80] natural-log Slaney mel
```

Mels must come from the NVIDIA/Tacotron 2 front end (`tfwaveglow.audio.mel_spectrogram`: 22.05 kHz,
FFT 1024, hop 256, 80 bins 0–8 kHz, natural log).

## Data

{corpus.description}

## Licence

The recordings are licensed under the GNU General Public License, version 2 (see
`tests/data/LICENSE` and {copyright}); the weights
are trained on them and are distributed under the **GPL-2** as well. tfwaveglow's code is BSD-3-Clause.

## Training

{configs} with the overrides under Reproduce: random {segment}-sample segments, batch {t.batch_size},
Adam, {precision(t)}, {order} data order.{history} From the shipped `params.yaml`:

```yaml
{model_yaml}
{train_yaml}
```

## Reproduce

```bash
{commands}
python scripts/ship_model.py --run_dir=runs/ship --output_dir=models/fishfillets_cs
```

Running `train.py` again resumes from the last checkpoint; a later `train.py` call with
`--params_override` changes those keys from its start on. Another machine or thread count gives a
run close to, not bit-identical with, this one.

## Intended use and limits

- Research and demonstration: a vocoder for {corpus.voices}, e.g. for the
  copy synthesis of `make demo` or behind a Czech TTS model trained on the same corpus.
- Trained {total_hours:.1f} h on a CPU, a small model (validation NLL {_value(record["valid_nll"], 2)}
  against about −5.5 for NVIDIA's LJSpeech model): {quality}. Other speakers, languages,
  sampling rates or mel front ends are out of scope (expect worse audio).
- The voices belong to the game's voice actors: do not use the model to impersonate them.

## Examples

{examples}

## Evaluation

{EVALUATION_BEGIN}
{evaluation}
{EVALUATION_END}
"""
