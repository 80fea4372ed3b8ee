"""The channel graph of a Keras functional model: handlers per layer kind, coupled groups, surgery."""

from segprune.graph.groups import ChannelGraph, Group, Pin, build_channel_graph
from segprune.graph.handlers import ChannelHandler, ChannelwiseHandler, FixedHandler, MergeHandler, UnsupportedLayerError
from segprune.graph.registry import register_handler, register_traced
from segprune.graph.surgery import remove_channels

__all__ = [
    "ChannelGraph",
    "ChannelHandler",
    "ChannelwiseHandler",
    "FixedHandler",
    "Group",
    "MergeHandler",
    "Pin",
    "UnsupportedLayerError",
    "build_channel_graph",
    "register_handler",
    "register_traced",
    "remove_channels",
]
