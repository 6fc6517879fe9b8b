"""Keras layers of WaveGlow's flow steps and its optional post-filter."""

from tfwaveglow.layers.coupling import AffineCoupling
from tfwaveglow.layers.dilated_conv import (
    DepthwiseDilatedConv1D,
    DilatedConv1D,
    batch_to_time,
    dilated_conv1d,
    dilated_depthwise_conv1d,
    time_to_batch,
)
from tfwaveglow.layers.invertible_conv import Invertible1x1Conv
from tfwaveglow.layers.pointwise import PointwiseConv
from tfwaveglow.layers.postfilter import PostFilter
from tfwaveglow.layers.wn import WN

__all__ = [
    "WN",
    "AffineCoupling",
    "DepthwiseDilatedConv1D",
    "DilatedConv1D",
    "Invertible1x1Conv",
    "PointwiseConv",
    "PostFilter",
    "batch_to_time",
    "dilated_conv1d",
    "dilated_depthwise_conv1d",
    "time_to_batch",
]
