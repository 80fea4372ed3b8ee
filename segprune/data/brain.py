"""The built-in brain task: axial slices of one real T1 MRI with its hand-drawn anatomical parcellation.

The scan is "Colin27" (one adult brain, the average of 27 T1 acquisitions, 1 mm voxels) and the labels are
the AAL atlas (116 regions, Tzourio-Mazoyer et al., NeuroImage 15, 2002), delineated by hand on this very
scan; `builtin/brain/README.md` gives the provenance and the BSD-3 licence notice. The package holds the
146 labelled axial slices, cropped to the labels' bounding box (192x160 pixels, 1 mm), as 8-bit arrays in
one compressed `.npz` (`benchmarks/build_brain_data.py` regenerates it from the NIfTI files).

Classes. The 116 regions are merged by the AAL code's first digit, the atlas's own anatomical grouping,
with left and right merged: the training pipeline flips and turns patches, which would make a hemisphere
label unlearnable. That gives 8 structures plus background (white matter, CSF and everything outside the
labelled grey matter), from large lobes to small deep structures (insula 0.7% of the pixels, the basal
ganglia and thalamus 1.2%). Lobe borders follow sulci, so a network has to read shape and context, not
brightness. The default U-Net (`segprune train --data brain --epochs 300 --patience 50`, 37 minutes on two shared
CPU cores) reaches test Dice 0.761 [0.732, 0.777] (per class 0.65 for the basal ganglia and thalamus to 0.88 for the
cerebellum); after the default 40 epochs it is at 0.310.

Split. Slices of one volume are never split at random (neighbours 1 mm apart are nearly the same image).
The labelled slices, bottom to top, are cut into periods of 25: 10 training slices, 2 dropped, 6 test
slices, 2 dropped, 3 validation slices, 2 dropped. Every split spans the whole brain in six slabs, and
2 mm separate every test slab from every training slab. That leaves 60 training, 36 test and 16
validation slices. The test slices are neighbours within a slab, so an interval from a bootstrap over
test slices is narrower than one over independent scans would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segprune.data.dataset import SegmentationDataset

BRAIN_FILE = Path(__file__).resolve().parent / "builtin" / "brain" / "brain.npz"

# AAL code's first digit (2001 Precentral_L ... 9170 Vermis_10) -> class index; background is 0.
AAL_GROUPS = {2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8}
CLASS_NAMES = (
    "background",
    "frontal",
    "insula",
    "limbic (cingulate, hippocampus, amygdala)",
    "occipital",
    "parietal",
    "basal ganglia and thalamus",
    "temporal",
    "cerebellum",
)

# One period of the slab split, bottom to top: (split or None for dropped slices, number of slices).
SLAB_PERIOD = (("train", 10), (None, 2), ("test", 6), (None, 2), ("val", 3), (None, 2))


def slab_split(num_slices: int) -> dict[str, list[int]]:
    """Positions (0 = lowest labelled slice) of each split, by repeating `SLAB_PERIOD` from the bottom.

    Example:
        >>> {name: len(positions) for name, positions in slab_split(146).items()}
        {'train': 60, 'test': 36, 'val': 16}
    """
    pattern = [name for name, count in SLAB_PERIOD for _ in range(count)]
    splits: dict[str, list[int]] = {name: [] for name, _ in SLAB_PERIOD if name is not None}
    for position in range(num_slices):
        name = pattern[position % len(pattern)]
        if name is not None:
            splits[name].append(position)
    return splits


def brain_dataset(path: str | Path = BRAIN_FILE) -> SegmentationDataset:
    """The built-in brain task: 192x160 axial T1 slices, 9 classes (8 merged AAL structures and background).

    Grayscale images in [0, 1]; the split is by slabs of slices with 2 dropped slices between slabs (60 train,
    16 val, 36 test slices); the module docstring says why these classes and this split.

    Args:
        path: The `.npz` written by `benchmarks/build_brain_data.py` (the packaged one by default).

    Example:
        >>> data = brain_dataset()
        >>> data.num_classes, len(data.ids("test"))
        (9, 36)
    """
    with np.load(path, allow_pickle=False) as arrays:
        images, masks, slices = arrays["images"], arrays["masks"], arrays["slices"]
    ids = [f"z{int(z):03d}" for z in slices]
    index = {sample_id: position for position, sample_id in enumerate(ids)}
    splits = {name: [ids[position] for position in positions] for name, positions in slab_split(len(ids)).items()}

    def reader(sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        position = index[sample_id]
        image = (images[position].astype(np.float32) / 255.0)[..., None]
        return image, masks[position].astype(np.int32)

    return SegmentationDataset(name="brain", num_classes=len(CLASS_NAMES), image_channels=1, splits=splits, reader=reader)
