"""Writes the Keras-2 U-Net of issue 15: a ~480k-parameter U-Net built, trained and saved by Keras 2 (tf.keras).

The user's model of issue 15 is a Keras-2 era `unet.h5`: written the way the Data Science Bowl 2018 starter
kernels wrote them (Conv2D with ReLU and he_normal, Dropout between the two convolutions of a stage, no
BatchNorm, Conv2DTranspose up-sampling, a sigmoid head), trained with `model.fit` on the 12 training tiles of
the built-in nuclei data (`split.txt` lines `train`; the 4 test tiles are never seen), and saved with
`model.save("unet.h5")`. Everything here runs in Keras 2 (`tf_keras`), nothing in Keras 3, so the file is a
genuine Keras 2 file; segprune then reads it like any user's.

Needs the `tf-keras` package matching the installed TensorFlow (it is not a segprune dependency), e.g.

    pip install --no-deps --target /tmp/tfk tf-keras==2.21.0
    PYTHONPATH=/tmp/tfk flock /tmp/segprune-cpu.lock .venv/bin/python benchmarks/search_keras2_unet.py \\
        --out /work/notes/models/unet-keras2.h5

Then the issue's command, as a new user would run it:

    flock /tmp/segprune-cpu.lock /usr/bin/time -v .venv/bin/segprune prune /work/notes/models/unet-keras2.h5 \\
        --method greedy --target flops=0.25 --finetune-epochs 5 --data nuclei --out runs/keras2-greedy.keras

Measured (2 cores, under the CPU lock, other engineers' unlocked tests sharing the cores): training 264 s
(60 epochs), dense test Dice 0.9451; the command above 237 s end to end (55 candidates), 0.248 of the MACs,
test Dice 0.9433.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

NUCLEI = Path(__file__).resolve().parents[1] / "segprune" / "data" / "builtin" / "nuclei"


def build_unet(keras, base_filters: int = 16, depth: int = 3):
    """The starter-kernel U-Net: `depth` stages of `base_filters * 2**i` filters and a bottleneck."""
    layers = keras.layers

    def stage(x, filters, dropout):
        x = layers.Conv2D(filters, 3, activation="relu", kernel_initializer="he_normal", padding="same")(x)
        x = layers.Dropout(dropout)(x)
        return layers.Conv2D(filters, 3, activation="relu", kernel_initializer="he_normal", padding="same")(x)

    inputs = keras.Input(shape=(None, None, 1))
    x, skips = inputs, []
    for level in range(depth):
        x = stage(x, base_filters * 2**level, 0.1 * (1 + level // 2))
        skips.append(x)
        x = layers.MaxPooling2D((2, 2))(x)
    x = stage(x, base_filters * 2**depth, 0.3)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base_filters * 2**level, (2, 2), strides=(2, 2), padding="same")(x)
        x = layers.concatenate([x, skips[level]])
        x = stage(x, base_filters * 2**level, 0.1 * (1 + level // 2))
    outputs = layers.Conv2D(1, (1, 1), activation="sigmoid")(x)
    return keras.Model(inputs=[inputs], outputs=[outputs])


def training_tiles() -> tuple[np.ndarray, np.ndarray]:
    """The 12 `train` tiles of split.txt as float images in [0, 1] and float binary masks."""
    stems = [line.split()[1] for line in (NUCLEI / "split.txt").read_text().splitlines() if line.startswith("train ")]
    images = np.stack([np.asarray(Image.open(NUCLEI / "images" / f"{s}.png"), dtype="float32") / 255.0 for s in stems])
    masks = np.stack([(np.asarray(Image.open(NUCLEI / "masks" / f"{s}.png")) > 0).astype("float32") for s in stems])
    return images[..., None], masks[..., None]


def augmented(images: np.ndarray, masks: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`copies` random flips / 90-degree rotations of every tile (what a Keras 2 user did with numpy)."""
    rng = np.random.default_rng(seed)
    out_images, out_masks = [], []
    for _ in range(copies):
        for image, mask in zip(images, masks):
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            image, mask = np.rot90(image, turns), np.rot90(mask, turns)
            if flip:
                image, mask = image[:, ::-1], mask[:, ::-1]
            out_images.append(image)
            out_masks.append(mask)
    return np.stack(out_images), np.stack(out_masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("unet-keras2.h5"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--copies", type=int, default=8, help="augmented copies of the 12 tiles per epoch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import tf_keras as keras  # Keras 2, exactly what `import tensorflow.keras` gave users of TF <= 2.15

    keras.utils.set_random_seed(args.seed)
    model = build_unet(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    images, masks = training_tiles()
    for epoch in range(args.epochs):
        x, y = augmented(images, masks, args.copies, args.seed + epoch)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=True)
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}: loss {history.history['loss'][-1]:.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)  # Keras 2's HDF5 format (the suffix picks it)
    print(f"{model.count_params()} parameters, saved to {args.out}")


if __name__ == "__main__":
    main()
