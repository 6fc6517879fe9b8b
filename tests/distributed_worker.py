"""A training process for the distribution tests (run as a script by tests/test_training.py).

python tests/distributed_worker.py mirrored OUT_DIR
    Two logical CPU devices: trains the tiny model 4 steps with MirroredStrategy and
    with the default strategy from the same weights; writes weights_{initial,mirrored,default}.npz.
TF_CONFIG=... python tests/distributed_worker.py multi_worker OUT_DIR CORPUS_DIR
    One worker of a MultiWorkerMirroredStrategy cluster: trains the tiny config
    (configs/tiny.yaml, global batch 4) 4 steps on the preprocessed corpus in
    CORPUS_DIR (train.txt, audio/, mels/) into OUT_DIR/run_multi_worker, reading
    only its share of each global batch with training.training_dataset, and
    writes weights_worker<index>.npz, kept_worker<index>.json (the stream
    indices of the examples its pipeline kept) and reads_worker<index>.json
    (the segments it read from the files); worker 0 then trains the same steps
    on one device from the same files and writes weights_single.npz.

A last argument ``objectives`` (either mode) trains with the reverse-pass objectives
and discriminators instead of the NLL alone (tests/test_objectives.py: ADVERSARIAL
for the mirrored mode's 1024-sample segments, TINY_YAML_ADVERSARIAL for tiny.yaml's
4096, both with DISTRIBUTED_SCHEDULE: a discriminator-only step, then NLL-only and
reverse-pass steps in turn), and writes the discriminators' weights beside the
flow's as disc_<name>.npz ({variable path below the discriminators: value}).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STEPS = 4


def weights(model):
    from tfwaveglow.model_io import weights_to_arrays

    return weights_to_arrays(model)


def save_weights(out_dir: str, name: str, trainer) -> None:
    """weights_<name>.npz (the flow) and, with discriminators, disc_<name>.npz."""
    np.savez(os.path.join(out_dir, f"weights_{name}.npz"), **weights(trainer.model))
    if trainer.discriminators is not None:
        # Paths below the discriminators' own name (models in one process get numbered names).
        disc = {v.path.split("/", 1)[-1]: v.numpy() for v in trainer.discriminators.weights}
        assert len(disc) == len(trainer.discriminators.weights), "two discriminator variables share a path"
        np.savez(os.path.join(out_dir, f"disc_{name}.npz"), **disc)


def objective_overrides(mode: str) -> dict:
    """The objectives' config overrides (dotted keys) for the mode's tiny config."""
    import test_objectives as to

    if mode == "mirrored":
        sized = {k.replace("__", "."): v for k, v in to.ADVERSARIAL.items()}
    else:
        sized = to.TINY_YAML_ADVERSARIAL
    return {**sized, **to.DISTRIBUTED_SCHEDULE}


def main(mode: str, out_dir: str, *rest: str) -> None:
    objectives = bool(rest) and rest[-1] == "objectives"
    corpus_dir = (rest[:-1] if objectives else rest)[0] if mode == "multi_worker" else None
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfwaveglow import training

    # Created before anything else runs: MultiWorkerMirroredStrategy configures the runtime.
    strategy = training.create_strategy(mode)
    import test_training as tt

    print("replicas", strategy.num_replicas_in_sync, flush=True)

    if mode == "mirrored":
        extra = {k.replace(".", "__"): v for k, v in objective_overrides(mode).items()} if objectives else {}
        params = tt.tiny_params(train__deterministic=True, train__checkpoint_every=STEPS, **extra)
        dataset_fn = tt.stream_fn(*tt.clips(12))
        single = training.Trainer(params, os.path.join(out_dir, "run_default"))
        single.restore()
        mirrored = training.Trainer(params, os.path.join(out_dir, "run_mirrored"), strategy=strategy)
        mirrored.restore()
        mirrored.model.set_weights(single.model.get_weights())
        if objectives:
            mirrored.discriminators.set_weights(single.discriminators.get_weights())
        save_weights(out_dir, "initial", single)
        valid = tf.data.Dataset.from_tensor_slices(tt.clips(2, seed=5)).batch(1)
        summaries = {
            "mirrored": mirrored.fit(dataset_fn, valid, steps=STEPS),
            "default": single.fit(dataset_fn, valid, steps=STEPS),
        }
        save_weights(out_dir, "mirrored", mirrored)
        save_weights(out_dir, "default", single)
        with open(os.path.join(out_dir, "summaries.json"), "w", encoding="utf-8") as f:
            json.dump(summaries, f)
        return

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    params, corpus_files = corpus_training(corpus_dir, tt.ROOT, objective_overrides(mode) if objectives else {})

    def dataset_fn(step, context):
        return training.training_dataset(params, *corpus_files, step, context)

    kept = record_kept_indices()
    reads = record_reads()
    trainer = training.Trainer(params, os.path.join(out_dir, "run_multi_worker"), strategy=strategy)
    trainer.restore()
    trainer.fit(dataset_fn, steps=STEPS)
    save_weights(out_dir, f"worker{index}", trainer)
    with open(os.path.join(out_dir, f"reads_worker{index}.json"), "w", encoding="utf-8") as f:
        json.dump(sorted(reads), f)
    with open(os.path.join(out_dir, f"kept_worker{index}.json"), "w", encoding="utf-8") as f:
        json.dump(sorted(kept), f)
    if index == 0:
        single = training.Trainer(params, os.path.join(out_dir, "run_single"), strategy=tf.distribute.get_strategy())
        single.restore()
        single.fit(dataset_fn, steps=STEPS)
        save_weights(out_dir, "single", single)


def corpus_training(corpus_dir: str, root: str, overrides=None):
    """The tiny config at global batch 4 (plus ``overrides``), and ``(ids, wave_dir, lc_dir)`` of the corpus's
    training list."""
    import tfwaveglow
    from tfwaveglow import data

    params = tfwaveglow.load_params(
        os.path.join(root, "configs", "tiny.yaml"),
        {"train.batch_size": 4, "train.deterministic": True, "train.checkpoint_every": STEPS, **(overrides or {})},
    )
    ids = data.read_filelist(os.path.join(corpus_dir, "train.txt"))
    return params, (ids, os.path.join(corpus_dir, "audio"), os.path.join(corpus_dir, "mels"))


def record_kept_indices() -> list:
    """Records the stream index of every example an input pipeline keeps from now on.

    The index is what identifies an example (its utterance and segment start
    derive from it); two examples may read the same segment by chance.
    """
    from tfwaveglow import data

    kept, original = [], data.pipeline_share

    def share(batch_size, input_context):
        keep, per_replica = original(batch_size, input_context)

        def note(index, is_kept):
            if is_kept:
                kept.append(int(index))
            return is_kept

        def recording_keep(index):
            is_kept = tf.numpy_function(note, [index, keep(index)], tf.bool, stateful=True)
            return tf.reshape(is_kept, [])

        return recording_keep, per_replica

    data.pipeline_share = share
    return kept


def record_reads() -> list:
    """Records ``[wav name, start, frames]`` of every read of the file reader from now on."""
    from tfwaveglow import data

    reads, original = [], data._Utterances.read

    def read(self, wav_path, start, frames):
        reads.append([os.path.basename(os.fsdecode(wav_path)), int(start), int(frames)])
        return original(self, wav_path, start, frames)

    data._Utterances.read = read
    return reads


if __name__ == "__main__":
    main(*sys.argv[1:])
