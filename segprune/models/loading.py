"""Loading a user's own model: Keras 3 `.keras` files and legacy `.h5` files, Keras 2 ones included."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras

from segprune.backend._keras_internals import is_graph_model, placeholder_initial_values, plain_functional, rebuilt_copy
from segprune.models.checks import check_finite_weights

SUPPORTED_SUFFIXES = (".keras", ".h5", ".hdf5")
_GRAPH_CLASS_NAMES = ("Functional", "Sequential", "Model")

# Keras 2 wrote arguments that Keras 3 constructors reject. Each entry: (layer classes, argument, the value
# Keras 2 always wrote); a file with any other value needs a feature Keras 3 lacks and is refused.
_KERAS2_ONLY_ARGUMENTS = (
    (("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), "groups", 1),
    (("DepthwiseConv1D", "DepthwiseConv2D"), "groups", 1),
)


class ModelFileError(ValueError):
    """A model file segprune cannot use, with what to do about it."""


def load_model(path: str | Path, custom_objects: dict | None = None, safe_mode: bool = True) -> keras.Model:
    """Loads a functional or Sequential segmentation model from `.keras` or `.h5` and makes it trainable.

    `.h5` files written by Keras 2 / tf.keras (`model.save("unet.h5")`) are accepted: arguments that only
    Keras 2 wrote are dropped from a temporary copy first, so the user's file is never modified. The
    optimizer state and compile settings are not loaded; segprune compiles what it trains. A `keras.Model`
    subclass built functionally (keras-hub) loads when its class is registered or given in `custom_objects`.

    Args:
        path: A `.keras`, `.h5` or `.hdf5` file.
        custom_objects: Classes and functions the file names that Keras does not know, by the name the file
            uses: `{"FixedDropout": FixedDropout}` for a Keras 2 EfficientNet.
        safe_mode: Keep True unless you trust the file: `Lambda` layers store Python bytecode, which runs
            when the model is loaded, so a model file from an untrusted source can execute arbitrary code.
            False lets such files load.

    Returns:
        The model, with every layer (nested models included) set trainable.

    Raises:
        FileNotFoundError: Nothing exists at `path`.
        ModelFileError: The file is a SavedModel directory, corrupt, holds only weights, holds a
            subclassed model, or has an unsupported suffix.
        NonFiniteWeightsError: A weight holds NaN or infinity (named with its layer).

    Example:
        >>> model = segprune.load_model("unet.h5")
        >>> model = segprune.load_model("effnet_unet.h5", custom_objects={"FixedDropout": FixedDropout})
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(_directory_message(path))
    if not path.exists():
        raise FileNotFoundError(f"No model file at {str(path)!r}. Check the path; segprune reads .keras and .h5 files.")
    suffix = path.suffix.lower()
    options = _LoadOptions(custom_objects, safe_mode)
    if suffix == ".keras":
        model = _load_keras_file(path, options)
    elif suffix in (".h5", ".hdf5"):
        model = _load_h5_file(path, options)
    else:
        raise ModelFileError(
            f"Cannot load {str(path)!r}: unsupported suffix {path.suffix!r}. Supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)}. Save the model with model.save('model.keras')."
        )
    require_graph_model(model, source=str(path))
    check_finite_weights(model, source=str(path))
    set_trainable(model)
    return model


def copy_model(model: keras.Model) -> keras.Model:
    """A new, uncompiled model with the same architecture and weights; `model` is not touched.

    A `keras.Model` subclass built functionally (keras-hub) is copied as the plain functional graph of its
    layers, so the copy does not depend on the subclass's constructor or its `get_config`.
    """
    return rebuilt_copy(plain_functional(model))


def require_graph_model(model: keras.Model, source: str = "the model") -> None:
    """Raises a clear error unless `model` is a functional or Sequential model (whose graph can be read)."""
    if not is_graph_model(model):
        raise ModelFileError(
            f"{source} is a subclassed model ({type(model).__name__}); segprune needs the layer graph of a "
            "functional or Sequential model. Rebuild it with keras.Input(...) and keras.Model(inputs, outputs), "
            "then copy the weights across with set_weights()."
        )


def set_trainable(model: keras.Model) -> None:
    model.trainable = True
    for layer in model.layers:
        if is_graph_model(layer):
            set_trainable(layer)
        layer.trainable = True


def _directory_message(path: Path) -> str:
    if (path / "saved_model.pb").exists():
        return (
            f"{str(path)!r} is a TensorFlow SavedModel directory, which holds a traced graph and no Keras "
            "layers, so it cannot be pruned. Load the model in the code that made it and save it with "
            "model.save('model.keras') (Keras 3) or model.save('model.h5') (Keras 2 / tf.keras)."
        )
    return f"{str(path)!r} is a directory; pass a .keras or .h5 model file."


@dataclass(frozen=True)
class _LoadOptions:
    custom_objects: dict | None
    safe_mode: bool


def _load_keras_file(path: Path, options: _LoadOptions) -> keras.Model:
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{str(path)!r} is not a valid .keras file (a .keras file is a zip archive); it may be truncated "
            "or corrupt. Save the model again with model.save('model.keras')."
        )
    with zipfile.ZipFile(path) as archive:
        try:
            config = json.loads(archive.read("config.json"))
        except (KeyError, json.JSONDecodeError) as error:
            raise ModelFileError(f"{str(path)!r} has no readable config.json; the file is corrupt.") from error
    if '"keras_hub.' in json.dumps(config):  # its layers load from keras-hub, one of which needs a repair first
        _repair_keras_hub()
    return _keras_load(path, options, class_name=config.get("class_name"))


def _repair_keras_hub() -> None:
    try:
        import keras_hub  # noqa: F401  (the repair patches its classes)
    except ImportError:  # Keras's own error names the class it cannot find
        return
    from segprune.backend.keras_fixes import keras_hub_vit_embedding_round_trip

    keras_hub_vit_embedding_round_trip()


def _load_h5_file(path: Path, options: _LoadOptions) -> keras.Model:
    if not h5py.is_hdf5(path):
        raise ModelFileError(f"{str(path)!r} is not a valid HDF5 file; it may be truncated or corrupt.")
    with h5py.File(path, "r") as handle:
        raw_config = handle.attrs.get("model_config")
    if raw_config is None:
        raise ModelFileError(
            f"{str(path)!r} holds weights only (written by save_weights). Build the architecture in code, "
            "call model.load_weights(path), then save the whole model with model.save('model.keras')."
        )
    config = json.loads(raw_config)
    if config.get("class_name") not in _GRAPH_CLASS_NAMES:
        raise ModelFileError(
            f"{str(path)!r} holds a {config.get('class_name')} model; segprune needs a functional or "
            "Sequential model."
        )
    changed = _drop_keras2_only_arguments(config, source=str(path))
    if not changed:
        return _keras_load(path, options)
    with tempfile.TemporaryDirectory(prefix="segprune-h5-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r+") as handle:
            handle.attrs["model_config"] = json.dumps(config)
        return _keras_load(copy, options, shown_as=path)


def _drop_keras2_only_arguments(config: dict, source: str) -> bool:
    changed = False
    for layer in config.get("config", {}).get("layers", []):
        if layer.get("class_name") in _GRAPH_CLASS_NAMES:
            changed |= _drop_keras2_only_arguments(layer, source)
            continue
        layer_config = layer.get("config", {})
        for class_names, argument, keras2_value in _KERAS2_ONLY_ARGUMENTS:
            if layer.get("class_name") in class_names and argument in layer_config:
                value = layer_config.pop(argument)
                if value != keras2_value:
                    raise ModelFileError(
                        f"Layer {layer_config.get('name')!r} ({layer['class_name']}) in {source!r} has "
                        f"{argument}={value!r}, which Keras 3 does not support."
                    )
                changed = True
    return changed


def _keras_load(path: Path, options: _LoadOptions, shown_as: Path | None = None, class_name: str | None = None) -> keras.Model:
    shown = str(shown_as or path)
    try:
        with placeholder_initial_values():  # Keras assigns every weight from the file, or raises
            return keras.saving.load_model(path, custom_objects=options.custom_objects, compile=False, safe_mode=options.safe_mode)
    except Exception as error:  # Keras raises many types here; all mean the same to the user.
        if options.safe_mode and "Lambda" in str(error):
            raise ModelFileError(
                f"{shown!r} contains a Lambda layer. Lambda layers store Python bytecode that runs when the model "
                "is loaded, so a model file from an untrusted source can execute arbitrary code on your machine; "
                "segprune refuses them by default. If you trust where this file came from, load it with "
                "segprune.load_model(path, safe_mode=False) (--unsafe-lambda on the command line)."
            ) from error
        if class_name is not None and class_name not in _GRAPH_CLASS_NAMES:
            raise ModelFileError(
                f"{shown!r} holds a subclassed model ({class_name}) that Keras could not rebuild: {error}. segprune "
                "needs a functional or Sequential model: pass its class in custom_objects={...} (or import the "
                "library that registers it) if it is built functionally, as keras-hub models are; otherwise "
                "rebuild it with keras.Input(...) and keras.Model(inputs, outputs)."
            ) from error
        raise ModelFileError(
            f"Keras could not rebuild the model in {shown!r}: {error}. If it uses custom layers, pass them as "
            "custom_objects={'Name': Class} or import the module that defines them (registered with "
            "@keras.saving.register_keras_serializable()) before loading."
        ) from error
