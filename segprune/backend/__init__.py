"""Backend adapters: what differs between Keras backends (or needs a fix in Keras), one module per concern.

The rest of the package calls these functions and never branches on `keras.backend.backend()` itself.
"""
