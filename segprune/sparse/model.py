"""`SparseModel`: a model whose weights are multiplied by masks or hard-concrete gates while it trains.

The user's functional model is kept as it is. Each call maps the gated weights to `weight * gate` inside a
`keras.StatelessScope`, so every layer reads the gated value, gradients reach both the weight and the gate
parameters, and a masked weight gets an exactly-zero gradient (its Adam moments stay zero). BatchNorm
statistics updated inside the scope are written back after it. No layer is wrapped or replaced, which is
why any layer kind can be gated and why `strip` returns the plain model with the gates multiplied in.

A *site* is one weight of one layer; a *gate* is a mask (0/1, set by magnitude pruning) or a hard-concrete
gate (learnt, L0). A gate covers its site elementwise, or, for channel gates, along one axis, and one
channel gate may drive several sites (all layers of a coupled channel group).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import keras
import numpy as np
from keras import ops

from segprune.backend._keras_internals import leaf_layers
from segprune.models.loading import copy_model
from segprune.sparse import gates as hard_concrete

MASK = "mask"
HARD_CONCRETE = "hard-concrete"


@dataclass(frozen=True)
class Site:
    """One gated weight: `layer` (qualified name), the weight's name, its gate, and the gate's axis.

    `axis=None` gates the weight elementwise (the gate has the weight's shape); an integer axis broadcasts a
    vector gate along that axis of the weight (channel gates).
    """

    layer: str
    weight: str
    gate: str
    axis: int | None = None


@dataclass(frozen=True)
class GateSpec:
    """A gate: its name, kind (`"mask"` or `"hard-concrete"`), shape and, for L0, the cost of each entry.

    `cost` weighs each gate entry in the L0 penalty (for channel gates: the MACs the channel carries);
    None weighs all entries alike.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    cost: tuple[float, ...] | None = None


def find_weight(model: keras.Model, layer: str, weight: str):
    """The variable named `weight` of the layer with qualified name `layer` (nested models joined by '/')."""
    for path, candidate in leaf_layers(model):
        if "/".join((*path, candidate.name)) == layer:
            for variable in candidate.weights:
                if variable.name == weight or variable.path.endswith("/" + weight):
                    return variable
            names = [variable.name for variable in candidate.weights]
            raise KeyError(f"Layer {layer!r} has no weight {weight!r}; it has {names}.")
    raise KeyError(f"Model {model.name!r} has no layer {layer!r}.")


def _variable_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


@keras.saving.register_keras_serializable(package="segprune")
class SparseModel(keras.Model):
    """Trains `base_model` with gated weights; `strip(sparse_model)` gives back a plain, smaller-or-sparser model.

    Args:
        base_model: The functional model to train (it is trained in place: its weights are the gated ones').
        gates: The gates.
        sites: Which weights each gate multiplies.
        l0_strength: Weight of the expected-L0 penalty (mean over hard-concrete gate entries, cost-weighted).
        log_alpha_init: Initial log-alpha of hard-concrete gates (2.5 makes the deterministic gate exactly
            1 and the sampled one open ~95% of the time, so a trained model starts where it was).
        log_alpha_scale: Log-alpha is stored divided by this, so that the optimizer's step on it is this
            many times larger than on weights: a gate must travel ~5 units (from 2.5 to below -2.4) in a
            fine-tune of a few hundred steps, and Adam moves a parameter by about its learning rate per step.

    Example:
        >>> sparse = SparseModel(model, [GateSpec("g", "mask", (3, 3, 16, 16))], [Site("conv", "kernel", "g")])
    """

    def __init__(
        self,
        base_model: keras.Model,
        gates: Sequence[GateSpec],
        sites: Sequence[Site],
        l0_strength: float = 0.0,
        log_alpha_init: float = 2.5,
        log_alpha_scale: float = 100.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.base_model = base_model
        self.gate_specs = [GateSpec(g.name, g.kind, tuple(g.shape), None if g.cost is None else tuple(g.cost)) for g in gates]
        self.sites = [Site(**asdict(site)) if not isinstance(site, Site) else site for site in sites]
        self.l0_strength = float(l0_strength)
        self.log_alpha_init = float(log_alpha_init)
        self.log_alpha_scale = float(log_alpha_scale)
        self._check()
        self.site_variables = [find_weight(base_model, site.layer, site.weight) for site in self.sites]
        self.gate_variables = {spec.name: self._make_gate(spec) for spec in self.gate_specs}
        self.seed_generator = keras.random.SeedGenerator(0)
        self._check_shapes()
        self.built = True  # every variable exists now (the base model's and the gates): saving needs no call first

    def _check(self) -> None:
        names = [g.name for g in self.gate_specs]
        if len(set(names)) != len(names):
            raise ValueError("Gate names must be unique.")
        for spec in self.gate_specs:
            if spec.kind not in (MASK, HARD_CONCRETE):
                raise ValueError(f"Gate {spec.name!r} has kind {spec.kind!r}; use {MASK!r} or {HARD_CONCRETE!r}.")
        keys = [(site.layer, site.weight) for site in self.sites]
        if len(set(keys)) != len(keys):
            raise ValueError("A weight can be gated by one gate only.")
        unknown = {site.gate for site in self.sites} - set(names)
        if unknown:
            raise ValueError(f"Sites refer to unknown gates {sorted(unknown)}.")

    def _make_gate(self, spec: GateSpec):
        name = _variable_name(spec.name)
        if spec.kind == MASK:
            return self.add_weight(shape=spec.shape, initializer="ones", trainable=False, name=f"{name}_mask")
        initial = self.log_alpha_init / self.log_alpha_scale
        return self.add_weight(shape=spec.shape, initializer=keras.initializers.Constant(initial), name=f"{name}_log_alpha")

    def _check_shapes(self) -> None:
        specs = {spec.name: spec for spec in self.gate_specs}
        for site, variable in zip(self.sites, self.site_variables):
            shape = tuple(variable.shape)
            expected = shape if site.axis is None else (shape[site.axis],)
            if tuple(specs[site.gate].shape) != expected:
                raise ValueError(
                    f"Gate {site.gate!r} has shape {specs[site.gate].shape} but gates {site.layer}/{site.weight} "
                    f"of shape {shape} along axis {site.axis}: expected {expected}."
                )

    # ----------------------------------------------------------------------------------------------- gates
    def log_alpha(self, name: str):
        return self.gate_variables[name] * self.log_alpha_scale

    def gate_values(self, training: bool = False) -> dict:
        """Each gate's current multiplier: masks as they are, hard-concrete sampled (training) or deterministic."""
        values = {}
        for spec in self.gate_specs:
            variable = self.gate_variables[spec.name]
            if spec.kind == MASK:
                values[spec.name] = ops.convert_to_tensor(variable)
            elif training:
                values[spec.name] = hard_concrete.sample(self.log_alpha(spec.name), self.seed_generator)
            else:
                values[spec.name] = hard_concrete.deterministic(self.log_alpha(spec.name))
        return values

    def l0_penalty(self):
        """`l0_strength` times the cost-weighted share of hard-concrete gate entries expected to be open."""
        total, weight = 0.0, 0.0
        for spec in self.gate_specs:
            if spec.kind != HARD_CONCRETE:
                continue
            open_probability = hard_concrete.probability_open(self.log_alpha(spec.name))
            if spec.cost is None:
                total = total + ops.sum(open_probability)
                weight += float(np.prod(spec.shape))
            else:
                cost = np.asarray(spec.cost, dtype="float32")
                total = total + ops.sum(open_probability * cost)
                weight += float(cost.sum())
        return self.l0_strength * total / max(weight, 1.0)

    def gated_weights(self, values: dict) -> list:
        """(variable, gated value) for every site."""
        pairs = []
        for site, variable in zip(self.sites, self.site_variables):
            gate = values[site.gate]
            if site.axis is not None:
                rank = len(variable.shape)
                axis = site.axis % rank
                gate = ops.reshape(gate, [-1 if i == axis else 1 for i in range(rank)])
            pairs.append((variable, variable * ops.cast(gate, variable.dtype)))
        return pairs

    # ------------------------------------------------------------------------------------------------ call
    def call(self, inputs, training=None):
        pairs = self.gated_weights(self.gate_values(bool(training)))
        gated = {id(variable) for variable, _ in pairs}
        # A scope answers only for the variables it maps, not its enclosing scope's: JAX's trainer runs this
        # inside its own scope holding the step's weights, so the ungated weights (and the dropout seeds) are
        # mapped to their current values here, or they would read the values from before `fit` started.
        current = [(variable, variable.value) for variable in self.base_model.variables if id(variable) not in gated]
        stateful = [variable for variable in self.base_model.non_trainable_variables if id(variable) not in gated]
        with keras.StatelessScope(state_mapping=[*pairs, *current]) as scope:
            before = [scope.get_current_value(variable) for variable in stateful]
            outputs = self.base_model(inputs, training=training)
        for variable, value in zip(stateful, before):
            updated = scope.get_current_value(variable)
            if updated is not value:  # BatchNorm statistics, dropout seeds: what the call assigned
                variable.assign(updated)
        if training and self.l0_strength > 0:
            self.add_loss(self.l0_penalty())
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        base_model = keras.saving.serialize_keras_object(self.base_model)
        # A base model trained before it was gated (the L1 phase) is compiled with segprune's loss; the
        # gated model's checkpoint must load without segprune, like every other saved model.
        base_model.pop("compile_config", None)
        config.update(
            base_model=base_model,
            gates=[asdict(spec) for spec in self.gate_specs],
            sites=[asdict(site) for site in self.sites],
            l0_strength=self.l0_strength,
            log_alpha_init=self.log_alpha_init,
            log_alpha_scale=self.log_alpha_scale,
        )
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> SparseModel:
        config = dict(config)
        config["base_model"] = keras.saving.deserialize_keras_object(config["base_model"], custom_objects=custom_objects)
        config["gates"] = [GateSpec(**g) for g in config["gates"]]
        config["sites"] = [Site(**s) for s in config["sites"]]
        return cls(**config)


def strip(model: keras.Model) -> keras.Model:
    """A plain copy of the base model with the deterministic gates multiplied into its weights.

    The result has no masks, gates or custom classes: it saves as `.keras` and loads without segprune.
    A model that is not a `SparseModel` comes back as a plain copy.

    Example:
        >>> plain = strip(sparse_model)
        >>> plain.save("unet-sparse.keras")
    """
    base = model.base_model if isinstance(model, SparseModel) else model
    plain = copy_model(base)
    if not isinstance(model, SparseModel):
        return plain
    for variable, value in model.gated_weights(model.gate_values(training=False)):
        layer, weight = _site_of(model, variable)
        find_weight(plain, layer, weight).assign(ops.convert_to_numpy(value))
    return plain


def _site_of(model: SparseModel, variable) -> tuple[str, str]:
    for site, candidate in zip(model.sites, model.site_variables):
        if candidate is variable:
            return site.layer, site.weight
    raise KeyError(variable.path)
