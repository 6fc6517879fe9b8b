"""Widens a trained model's WNs without changing what it synthesises (tfwaveglow.growth).

    python scripts/grow_model.py --model=MODEL --output_dir=DIR --wn_channels=N [--seed=0]

MODEL: whatever ``synthesize.py --model`` accepts (an inference directory or a training run).
DIR receives an inference model (``params.yaml`` + float32 ``weights.npz``) whose config is
MODEL's with ``model.wn.n_channels = N``: every old weight in place, the new channels' weights
freshly initialised (from ``--seed``) with the paths from new channels into old ones at zero, so
that its output equals MODEL's (the largest difference on a test mel is printed).
``train.py --init_from=DIR --params=...`` (the configs naming the same width) then trains the
wider model from there.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the trained model to widen")
    parser.add_argument("--output_dir", required=True, help="where the wider inference model is written")
    parser.add_argument("--wn_channels", type=int, required=True, help="the WNs' new residual channels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new channels' fresh weights")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from tfwaveglow.quiet_import import import_tensorflow

    tf = import_tensorflow()
    import keras

    import tfwaveglow
    from tfwaveglow.config import params_from_dict
    from tfwaveglow.growth import widen_wn
    from tfwaveglow.model_io import load_model_and_params

    source, params = load_model_and_params(args.model)
    if args.wn_channels < source.wn_n_channels:
        print(
            f"grow_model.py: --wn_channels {args.wn_channels} is below {args.model}'s {source.wn_n_channels}",
            file=sys.stderr,
        )
        return 2
    wide_params = params_from_dict(params.to_dict(), overrides={"model.wn.n_channels": args.wn_channels})
    keras.utils.set_random_seed(args.seed)
    target = tfwaveglow.WaveGlow.from_params(wide_params)
    widen_wn(source, target)
    out = tfwaveglow.save_model(target, args.output_dir, wide_params)

    mel = tf.random.stateless_normal([1, 32, params.audio.n_mel_channels], seed=[args.seed, 1]) - 5.0
    z = tf.random.stateless_normal(source.latent_shape(mel), seed=[args.seed, 2])
    difference = float(tf.reduce_max(tf.abs(source.infer(mel, z=z) - target.infer(mel, z=z))))
    print(
        f"{args.model}: WN channels {source.wn_n_channels} -> {args.wn_channels}, "
        f"{source.count_params():,} -> {target.count_params():,} parameters; written to {out}; "
        f"largest output difference on a test mel {difference:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
