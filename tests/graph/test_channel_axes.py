"""Handlers describe their weights: the axes they list slice, measure and compensate every layer kind alike."""

import keras
import numpy as np
import pytest

from segprune.graph import build_channel_graph
from segprune.graph.registry import handler_for

LAYERS = {
    "conv": lambda: keras.layers.Conv2D(5, 3, padding="same"),
    "dense": lambda: keras.layers.Dense(5),
    "transpose-stride-2": lambda: keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same"),
    "depthwise": lambda: keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
    "separable": lambda: keras.layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2),
    "grouped": lambda: keras.layers.Conv2D(6, 3, padding="same", groups=2),
    "grouped-depthwise": lambda: keras.layers.Conv2D(8, 3, padding="same", groups=4),
}


def _single_layer_model(layer):
    inputs = keras.Input((16, 16, 4))
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("name", list(LAYERS))
def test_mean_response_is_the_measured_shift_of_output_means(name):
    model = _single_layer_model(LAYERS[name]())
    graph = build_channel_graph(model)
    call = graph.trace.calls[-1]
    response = handler_for(call.layer).mean_response(call)
    baseline = model.predict(np.zeros((1, 16, 16, 4), np.float32), verbose=0)
    for channel in range(4):
        constant = np.zeros((1, 16, 16, 4), np.float32)
        constant[..., channel] = 1.0
        shift = model.predict(constant, verbose=0) - baseline
        crop = shift.shape[1] // 4  # borders read zero padding, not the constant
        measured = shift[0, crop:-crop, crop:-crop].mean(axis=(0, 1))
        np.testing.assert_allclose(response[channel], measured, atol=1e-4)


@pytest.mark.parametrize("name", list(LAYERS))
def test_channel_axes_match_the_weight_shapes(name):
    model = _single_layer_model(LAYERS[name]())
    graph = build_channel_graph(model)
    call = graph.trace.calls[-1]
    shapes = {w.path.rsplit("/", 1)[-1]: w.shape for w in call.layer.weights}
    axes = handler_for(call.layer).channel_axes(call)
    assert {axis.weight for axis in axes} == set(shapes)  # every weight of these layers runs over channels
    for axis in axes:
        assert len(axis.positions) == shapes[axis.weight][axis.axis]
        width = (call.input_shapes if axis.side == "input" else call.output_shapes)[axis.tensor][-1]
        assert axis.positions.min() >= 0 and axis.positions.max() < width
