"""The hand-rolled dilated convolutions against NumPy and TensorFlow's native dilated conv."""

import numpy as np
import pytest
import tensorflow as tf

from tfwaveglow.layers import DilatedConv1D, batch_to_time, dilated_conv1d, time_to_batch
from tfwaveglow.layers.dilated_conv import MODES, native_dilation_gradient_error

HAND_ROLLED = [mode for mode in MODES if mode != "native"]


def numpy_dilated_conv(x, kernel, dilation):
    """'Same' correlation with the equivalent sparse (zero-stuffed) kernel.

    x [B, T, Cin], kernel [k, Cin, Cout] -> [B, T, Cout].
    """
    k = kernel.shape[0]
    span = dilation * (k - 1) + 1
    sparse = np.zeros((span,) + kernel.shape[1:], kernel.dtype)
    sparse[::dilation] = kernel
    half = (span - 1) // 2
    xp = np.pad(x, [(0, 0), (half, half), (0, 0)])
    t = x.shape[1]
    out = np.zeros((x.shape[0], t, kernel.shape[2]), np.float64)
    for tap in range(span):
        if np.any(sparse[tap]):
            out += xp[:, tap : tap + t, :] @ sparse[tap]
    return out


@pytest.mark.parametrize("dilation", [1, 2, 3, 4, 8, 16, 32, 64, 128])
@pytest.mark.parametrize("length", [1, 37, 129, 300])
def test_matches_numpy_sparse_kernel_and_native(dilation, length):
    rng = np.random.default_rng(dilation * 1000 + length)
    x = rng.standard_normal((2, length, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5)).astype(np.float32)
    expected = numpy_dilated_conv(x, kernel, dilation)
    native = dilated_conv1d(tf.constant(x), tf.constant(kernel), dilation, "native").numpy()
    for mode in HAND_ROLLED:
        got = dilated_conv1d(tf.constant(x), tf.constant(kernel), dilation, mode).numpy()
        assert got.shape == (2, length, 5), mode
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4, err_msg=mode)
        np.testing.assert_allclose(got, native, atol=1e-4, rtol=1e-4, err_msg=mode)


def numpy_dilated_conv_gradients(x, kernel, dilation, upstream):
    """Gradients of ``sum(conv(x) * upstream)`` for x and kernel, from the sparse-kernel form.

    ``y[t] = sum_tap xp[t + tap] @ sparse[tap]``, so ``dxp[t + tap] += upstream[t] @ sparse[tap].T``
    and ``dsparse[tap] = xp[t + tap].T @ upstream[t]`` summed over t.
    """
    k = kernel.shape[0]
    span = dilation * (k - 1) + 1
    half = (span - 1) // 2
    xp = np.pad(x.astype(np.float64), [(0, 0), (half, half), (0, 0)])
    t = x.shape[1]
    dxp = np.zeros_like(xp)
    dkernel = np.zeros(kernel.shape, np.float64)
    for j in range(k):
        tap = j * dilation
        dxp[:, tap : tap + t, :] += upstream @ kernel[j].T
        dkernel[j] = np.einsum("bti,bto->io", xp[:, tap : tap + t, :], upstream)
    return dxp[:, half : half + t, :], dkernel


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kernel_size", "dilation", "length"), [(3, 1, 37), (3, 8, 5), (3, 4, 64), (3, 16, 100), (5, 4, 50), (1, 2, 9)]
)
def test_gradients_match_numpy(mode, kernel_size, dilation, length):
    """Training differentiates through the conv (shifted_matmul has a hand-written gradient)."""
    if mode == "native" and dilation > 1 and native_dilation_gradient_error():
        pytest.skip(f"this TensorFlow build cannot differentiate conv1d's dilation: {native_dilation_gradient_error()}")
    rng = np.random.default_rng(kernel_size * 100 + dilation + length)
    x = rng.standard_normal((2, length, 3)).astype(np.float32)
    kernel = rng.standard_normal((kernel_size, 3, 4)).astype(np.float32)
    upstream = rng.standard_normal((2, length, 4)).astype(np.float32)
    x_t, kernel_t = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([x_t, kernel_t])
        loss = tf.reduce_sum(dilated_conv1d(x_t, kernel_t, dilation, mode) * upstream)
    dx, dkernel = tape.gradient(loss, [x_t, kernel_t])
    expected_dx, expected_dkernel = numpy_dilated_conv_gradients(x, kernel, dilation, upstream)
    np.testing.assert_allclose(dx.numpy(), expected_dx, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(dkernel.numpy(), expected_dkernel, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kernel_size", [1, 5])
def test_other_kernel_sizes(kernel_size):
    rng = np.random.default_rng(kernel_size)
    x = rng.standard_normal((1, 50, 2)).astype(np.float32)
    kernel = rng.standard_normal((kernel_size, 2, 2)).astype(np.float32)
    for mode in HAND_ROLLED:
        got = dilated_conv1d(tf.constant(x), tf.constant(kernel), 4, mode).numpy()
        np.testing.assert_allclose(got, numpy_dilated_conv(x, kernel, 4), atol=1e-4, rtol=1e-4, err_msg=mode)


@pytest.mark.parametrize("dilation", [1, 4, 7])
def test_identity_kernel_has_no_time_shift(dilation):
    x = np.random.default_rng(0).standard_normal((2, 23, 4)).astype(np.float32)
    kernel = np.zeros((3, 4, 4), np.float32)
    kernel[1] = np.eye(4)
    for mode in HAND_ROLLED:
        got = dilated_conv1d(tf.constant(x), tf.constant(kernel), dilation, mode).numpy()
        np.testing.assert_array_equal(got, x, err_msg=mode)


def test_time_to_batch_layout_and_inverse():
    x = np.arange(2 * 12 * 1, dtype=np.float32).reshape(2, 12, 1)
    y = time_to_batch(tf.constant(x), 3).numpy()
    assert y.shape == (6, 4, 1)
    # Row p * batch + b holds x[b, p::3].
    for p in range(3):
        for b in range(2):
            np.testing.assert_array_equal(y[p * 2 + b], x[b, p::3])
    np.testing.assert_array_equal(batch_to_time(tf.constant(y), 3).numpy(), x)


@pytest.mark.parametrize("mode", HAND_ROLLED)
def test_works_inside_tf_function_with_unknown_length(mode):
    layer = DilatedConv1D(2, 3, kernel_size=3, dilation_rate=8, mode=mode)
    layer.build(None)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 2], tf.float32)])
    rng = np.random.default_rng(1)
    for length in (5, 64, 77):
        x = rng.standard_normal((1, length, 2)).astype(np.float32)
        expected = numpy_dilated_conv(x, layer.effective_kernel().numpy(), 8) + layer.bias.numpy()
        np.testing.assert_allclose(fn(tf.constant(x)).numpy(), expected, atol=1e-4, rtol=1e-4)
    assert len(fn._list_all_concrete_functions_for_serialization()) == 1


def test_weight_norm_kernel_is_g_times_v_over_norm():
    layer = DilatedConv1D(4, 6, kernel_size=3, dilation_rate=2, weight_norm=True)
    layer.build(None)
    rng = np.random.default_rng(2)
    v = rng.standard_normal((3, 4, 6)).astype(np.float32)
    g = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    layer.kernel_v.assign(v)
    layer.kernel_g.assign(g)
    # PyTorch weight norm (dim=0 of weight [out, in, k]): norm over every axis but out.
    expected = g * v / np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1)))
    np.testing.assert_allclose(layer.effective_kernel().numpy(), expected, rtol=1e-5)


def test_weight_norm_starts_equal_to_the_initial_kernel():
    layer = DilatedConv1D(4, 6, kernel_size=3, dilation_rate=2, weight_norm=True)
    layer.build(None)
    np.testing.assert_allclose(layer.effective_kernel().numpy(), layer.kernel_v.numpy(), rtol=1e-5)


def test_a_dead_channel_assigned_under_weight_norm_stays_zero_with_finite_gradients():
    """A folded kernel with an all-zero output channel (a trained-to-zero gain, or float16 rounding)."""
    layer = DilatedConv1D(4, 6, kernel_size=3, dilation_rate=2, weight_norm=True)
    layer.build(None)
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 4, 6)).astype(np.float32)
    kernel[:, :, 2] = 0.0
    layer.assign_kernel(kernel, np.zeros(6, np.float32))
    np.testing.assert_allclose(layer.effective_kernel().numpy(), kernel, rtol=1e-5, atol=1e-7)
    x = tf.constant(rng.standard_normal((1, 16, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grads = tape.gradient(loss, [layer.kernel_v, layer.kernel_g])
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    # Only the gain can revive the channel: the direction gets no gradient while g = 0.
    np.testing.assert_array_equal(grads[0].numpy()[:, :, 2], 0.0)


def test_rejects_even_kernel_and_unknown_mode():
    with pytest.raises(ValueError, match="odd"):
        DilatedConv1D(2, 2, kernel_size=4)
    with pytest.raises(ValueError, match="mode"):
        DilatedConv1D(2, 2, mode="conv2d")


def test_time_to_batch_gradients_with_unknown_length():
    """The crop's hand-written gradient when the length is only known at run time (divisible or not)."""
    rng = np.random.default_rng(7)
    kernel = rng.standard_normal((3, 3, 4)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3]), tf.TensorSpec([None, None, 4])])
    def gradients(x, upstream):
        kernel_t = tf.constant(kernel)
        with tf.GradientTape() as tape:
            tape.watch([x, kernel_t])
            loss = tf.reduce_sum(dilated_conv1d(x, kernel_t, 8, "time_to_batch") * upstream)
        return tape.gradient(loss, [x, kernel_t])

    for length in (64, 77, 3):
        x = rng.standard_normal((2, length, 3)).astype(np.float32)
        upstream = rng.standard_normal((2, length, 4)).astype(np.float32)
        dx, dkernel = gradients(tf.constant(x), tf.constant(upstream))
        expected_dx, expected_dkernel = numpy_dilated_conv_gradients(x, kernel, 8, upstream)
        np.testing.assert_allclose(dx.numpy(), expected_dx, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(dkernel.numpy(), expected_dkernel, atol=1e-4, rtol=1e-4)
