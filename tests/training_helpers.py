"""Helpers the training tests share: worker processes of the distribution tests and the speech corpus.

Used by tests/test_training.py and tests/test_objectives.py; not a test module itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_worker(args, env_extra=None, timeout=240):
    """Starts ``tests/distributed_worker.py ARGS`` (TF_CONFIG only from ``env_extra``)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, **(env_extra or {}))
    env.pop("TF_CONFIG", None)
    if env_extra and "TF_CONFIG" in env_extra:
        env["TF_CONFIG"] = env_extra["TF_CONFIG"]
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "distributed_worker.py"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=240):
    """The worker's output once it exits 0 (it is killed after ``timeout`` seconds)."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"worker timed out:\n{out[-4000:]}") from None
    assert process.returncode == 0, out[-4000:]
    return out


def preprocess_speech(speech_dir, root) -> None:
    """The shipped speech clips preprocessed into a training corpus in ``root`` (4 train, 2 valid utterances)."""
    import tfwaveglow
    from tfwaveglow import preprocess

    preprocess.preprocess_corpus(
        os.fspath(speech_dir),
        os.path.join(root, "mels"),
        os.fspath(root),
        tfwaveglow.load_params(None),
        num_workers=1,
        progress=False,
    )


def slot_checkpoint_keys(path, slot: str) -> list[str]:
    """The keys of the tensors a checkpoint saved for the variables of one of its root slots.

    A checkpoint stores each variable once, under its shortest path in the object graph: the
    discriminators' weights, for one, appear as ``discriminator_optimizer/_trainable_variables/<i>/...``
    in ``tf.train.list_variables``, not under ``discriminators/``. This follows the saved object graph
    from ``slot`` instead.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(os.fspath(path)).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    (start,) = [c.node_id for c in graph.nodes[0].children if c.local_name == slot]
    keys, seen, stack = [], set(), [start]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            keys += [a.checkpoint_key for a in graph.nodes[node].attributes]
            stack += [c.node_id for c in graph.nodes[node].children]
    return keys
