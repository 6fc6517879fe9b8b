"""WaveGlow's bias denoiser: subtract the model's own hiss from every STFT frame.

A trained WaveGlow adds a faint, nearly stationary hiss (its "bias"). NVIDIA
estimates it by synthesising an all-zero mel (88 frames) with ``sigma = 0``
and taking the STFT magnitude of that output's first frame as a bias spectrum.
Denoising subtracts ``strength * bias`` from the magnitude of every frame,
clamps at 0 and inverts the STFT with the original phase.

The STFT is NVIDIA/Tacotron 2's: centred frames (the signal reflect-padded by
``n_fft // 2`` on both sides), a periodic Hann window of ``win_length`` samples
zero-padded (centred) to ``n_fft``; the inverse overlap-adds the windowed
frames and divides by the summed squared window, sample by sample, so it
reconstructs every sample exactly, the first and last included. Everything is
``tf.signal`` and plain TensorFlow ops, so it runs inside an exported graph.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# NVIDIA's bias input: an all-zero mel of this many frames.
BIAS_MEL_FRAMES = 88


def stft_window(n_fft: int, win_length: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples, zero-padded (centred) to ``n_fft``."""
    if win_length > n_fft:
        raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left)).astype(np.float32)


class Denoiser(tf.Module):
    """Bias-spectrum subtraction in the STFT domain.

    Args:
      bias_spectrum: ``[n_fft // 2 + 1]`` magnitude to subtract (per unit strength).
      n_fft, hop_length, win_length: the STFT (NVIDIA: 1024, 256, 1024).

    Shapes: audio ``[batch, samples]`` with ``samples > n_fft // 2`` (reflect
    padding needs it); strength scalar or ``[batch]``.
    """

    def __init__(self, bias_spectrum, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024, name=None):
        super().__init__(name=name)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.win_length = int(win_length)
        bias = np.asarray(bias_spectrum, dtype=np.float32)
        if bias.shape != (self.n_fft // 2 + 1,):
            raise ValueError(f"bias_spectrum must have shape [{self.n_fft // 2 + 1}], got {bias.shape}")
        self.bias_spectrum = tf.constant(bias)
        self.window = tf.constant(stft_window(self.n_fft, self.win_length))

    @classmethod
    def from_model(
        cls,
        model,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int = 1024,
        bias_frames: int = BIAS_MEL_FRAMES,
    ) -> "Denoiser":
        """Measures ``model``'s bias: STFT magnitude of the first frame of ``infer(zeros, sigma=0)``.

        Args:
          model: a :class:`tfwaveglow.WaveGlow`.
          n_fft, hop_length, win_length: the STFT used for denoising.
          bias_frames: frames of the all-zero mel (NVIDIA: 88).
        """
        mel = tf.zeros([1, bias_frames, model.n_mel_channels], tf.float32)
        z = tf.zeros(model.latent_shape(mel), tf.float32)
        bias_audio = model.infer(mel, sigma=0.0, z=z)
        denoiser = cls(np.zeros(n_fft // 2 + 1, np.float32), n_fft, hop_length, win_length)
        magnitude, _ = denoiser.stft(bias_audio)
        return cls(magnitude[0, 0].numpy(), n_fft, hop_length, win_length)

    @property
    def min_samples(self) -> int:
        """The shortest signal the centred STFT accepts (reflect padding needs more than ``n_fft // 2``)."""
        return self.n_fft // 2 + 1

    def stft(self, audio):
        """``[B, S] -> (magnitude, phase)``, each ``[B, 1 + S // hop, n_fft // 2 + 1]``."""
        audio = tf.convert_to_tensor(audio, tf.float32)
        pad = self.n_fft // 2
        padded = tf.pad(audio, [[0, 0], [pad, pad]], mode="REFLECT")
        frames = tf.signal.frame(padded, self.n_fft, self.hop_length) * self.window
        spectrum = tf.signal.rfft(frames, fft_length=[self.n_fft])
        return tf.abs(spectrum), tf.math.angle(spectrum)

    def istft(self, magnitude, phase, length):
        """Inverse of :meth:`stft`: ``[B, T, n_fft // 2 + 1] x 2 -> [B, length]``.

        Overlap-adds the windowed inverse FFTs and divides every sample by the
        sum of the squared windows that cover it (where that sum is not ~0).
        """
        spectrum = tf.complex(magnitude * tf.cos(phase), magnitude * tf.sin(phase))
        frames = tf.signal.irfft(spectrum, fft_length=[self.n_fft]) * self.window
        signal = tf.signal.overlap_and_add(frames, self.hop_length)
        n_frames = tf.shape(magnitude)[1]
        window_sq = tf.tile(tf.square(self.window)[None, :], tf.stack([n_frames, 1]))
        window_sum = tf.signal.overlap_and_add(window_sq, self.hop_length)
        tiny = np.finfo(np.float32).tiny
        signal = tf.where(window_sum > tiny, signal / tf.maximum(window_sum, tiny), signal)
        pad = self.n_fft // 2
        return signal[:, pad : pad + length]

    def __call__(self, audio, strength):
        """Denoised ``audio``: ``[B, S] -> [B, S]``.

        Args:
          audio: ``[B, S]`` float32, ``S > n_fft // 2``.
          strength: scalar or ``[B]``; 0 leaves the magnitude unchanged (the
            STFT round trip still runs), NVIDIA suggests 0.01 to 0.1.
        """
        audio = tf.convert_to_tensor(audio, tf.float32)
        magnitude, phase = self.stft(audio)
        strength = tf.reshape(tf.cast(strength, tf.float32), [-1, 1, 1])
        magnitude = tf.maximum(magnitude - strength * self.bias_spectrum, 0.0)
        return self.istft(magnitude, phase, tf.shape(audio)[1])

    def denoise_blocks(self, audio, strength, block_samples: int = 1 << 20):
        """In-graph :func:`denoise_in_blocks`: ``[1, S] -> [1, S]``, memory bounded by the block, not ``S``.

        Args:
          audio: ``[1, S]`` float32, ``S > n_fft // 2``.
          strength: scalar.
          block_samples: samples kept per block (rounded down to whole hops).
        """
        audio = tf.convert_to_tensor(audio, tf.float32)
        total = tf.shape(audio)[1]
        hop = self.hop_length
        context = -(-self.n_fft // hop) * hop
        block = max(hop, block_samples // hop * hop)
        strength = tf.reshape(tf.cast(strength, tf.float32), [1])

        def body(index, start, blocks):
            stop = tf.minimum(start + block, total)
            seg_start, seg_stop = tf.maximum(0, start - context), tf.minimum(total, stop + context)
            segment = self(audio[:, seg_start:seg_stop], strength)
            return index + 1, stop, blocks.write(index, segment[0, start - seg_start : stop - seg_start])

        blocks = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        _, _, blocks = tf.while_loop(
            lambda index, start, blocks: start < total, body, [0, 0, blocks], parallel_iterations=1
        )
        return blocks.concat()[None]

    def denoise_long(self, audio: np.ndarray, strength: float, block_samples: int = 1 << 20) -> np.ndarray:
        """Denoises a long 1-D signal block by block; equal to one call on all of it.

        See :func:`denoise_in_blocks`.
        """
        return denoise_in_blocks(
            self._denoise_compiled, audio, strength, self.n_fft, self.hop_length, block_samples=block_samples
        )

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.float32)],
        reduce_retracing=True,
    )
    def _denoise_compiled(self, audio, strength):
        return self(audio, strength)


def denoise_in_blocks(
    denoise_fn, audio: np.ndarray, strength: float, n_fft: int, hop_length: int, block_samples: int = 1 << 20
) -> np.ndarray:
    """Runs a denoiser over a long 1-D signal block by block, equal to one call on all of it.

    A denoised sample is covered by frames centred within ``n_fft / 2`` of it,
    each reading ``n_fft / 2`` further, so a block denoised with ``n_fft``
    samples of real signal either side (rounded up to whole hops, so block
    frames sit on the one-shot frame grid) matches the one-shot result; the
    reflect padding then only ever applies at the true ends. Memory is bounded
    by ``block_samples`` whatever the length.

    Args:
      denoise_fn: ``(audio [1, S] float32, strength [1] float32) -> [1, S]``,
        e.g. a :class:`Denoiser` or an exported model's ``denoise``.
      audio: ``[samples]``, more than ``n_fft // 2`` of them.
      strength: denoiser strength.
      n_fft, hop_length: the denoiser's STFT.
      block_samples: samples kept per call (rounded down to whole hops).

    Returns:
      ``[samples]`` float32.
    """
    audio = np.asarray(audio, dtype=np.float32)
    total = audio.shape[0]
    if total <= n_fft // 2:
        raise ValueError(f"denoising needs more than {n_fft // 2} samples (the STFT's reflect padding), got {total}")
    context = -(-n_fft // hop_length) * hop_length
    block = max(hop_length, block_samples // hop_length * hop_length)
    out = np.empty_like(audio)
    for start in range(0, total, block):
        stop = min(start + block, total)
        seg_start, seg_stop = max(0, start - context), min(total, stop + context)
        segment = denoise_fn(tf.constant(audio[None, seg_start:seg_stop]), tf.constant([strength], tf.float32))
        out[start:stop] = np.asarray(segment)[0, start - seg_start : stop - seg_start]
    return out
