"""Writes `legacy_unet_keras2.h5`: a small U-Net saved the way Keras 2 / tf.keras code saves it.

The file is checked in so the tests need no Keras 2 install. To regenerate it (needs the `tf-keras` package):

    TF_USE_LEGACY_KERAS=1 python tests/data/make_legacy_h5.py
"""

from pathlib import Path

import numpy as np
import tf_keras as keras  # Keras 2 API, exactly what `import tensorflow.keras` gave users of TF <= 2.15


def build_unet() -> keras.Model:
    inputs = keras.Input(shape=(None, None, 1))
    c1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    c1 = keras.layers.BatchNormalization()(c1)
    p1 = keras.layers.MaxPooling2D()(c1)
    c2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(p1)
    c2 = keras.layers.Dropout(0.1)(c2)
    u1 = keras.layers.Conv2DTranspose(8, 2, strides=2, padding="same")(c2)
    m1 = keras.layers.concatenate([u1, c1])
    c3 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(m1)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(c3)
    return keras.Model(inputs, outputs, name="legacy_unet")


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    model = build_unet()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    images = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")
    masks = (images > 0.5).astype("float32")
    model.fit(images, masks, epochs=1, verbose=0)  # so the file carries optimizer state like a real one
    model.save(Path(__file__).with_name("legacy_unet_keras2.h5"))
