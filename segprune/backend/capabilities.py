"""What only some Keras backends can do, refused in one line that names the backend that can."""

from __future__ import annotations

import keras


class BackendUnsupported(ValueError):
    """A feature the running Keras backend cannot provide (the message says which backend can)."""


def require_backend(feature: str, backends: tuple[str, ...]) -> None:
    """Raises `BackendUnsupported` unless the running Keras backend is one of `backends`.

    Args:
        feature: What was asked for, as the user would name it ("ONNX export").
        backends: The Keras backends that provide it.

    Example:
        >>> require_backend("LiteRT export", ("tensorflow",))
    """
    running = keras.backend.backend()
    if running in backends:
        return
    names = " or ".join(repr(name) for name in backends)
    raise BackendUnsupported(
        f"{feature} needs the Keras backend {names}; this process runs {running!r}. A model saved here (.keras) "
        f"loads under any backend: run this step with KERAS_BACKEND={backends[0]}."
    )
