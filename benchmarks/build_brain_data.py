"""Builds the packaged brain task (segprune/data/builtin/brain/brain.npz) from the Colin27 T1 and AAL NIfTI files.

Run once at development time; the package ships the result. Reads the files with the standard library and
NumPy only (gzip; NIfTI-1 dimensions as int16 at byte 40, data type at 70, data offset as float32 at 108;
x-fastest), merges the 116 AAL regions into `segprune.data.brain.CLASS_NAMES` by the code's first digit,
keeps the axial slices that carry labels, crops them to the labels' bounding box (centred, 192x160) with
anterior at the top, and prints what it wrote.

    .venv/bin/python benchmarks/build_brain_data.py [--source FOLDER]

FOLDER holds the Colin27 T1 and AAL files (default: the team's dataset copy in `shared/` beside the checkout).
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
from pathlib import Path

import numpy as np

from segprune.data.brain import AAL_GROUPS, BRAIN_FILE, CLASS_NAMES

SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "brain-aal-colin27"
HEIGHT, WIDTH = 192, 160  # rows run posterior-anterior (the labels span 180), columns left-right (146)
NIFTI_UINT8 = 2


def read_nifti(path: Path) -> np.ndarray:
    """A uint8 NIfTI-1 volume as a (z, y, x) array."""
    raw = gzip.decompress(path.read_bytes())
    dims = struct.unpack_from("<8h", raw, 40)
    (datatype,) = struct.unpack_from("<h", raw, 70)
    (offset,) = struct.unpack_from("<f", raw, 108)
    if dims[0] != 3 or datatype != NIFTI_UINT8:
        raise ValueError(f"{str(path)!r}: expected a 3-D uint8 volume (NIfTI datatype 2), got {dims[0]} dimensions, datatype {datatype}.")
    size_x, size_y, size_z = dims[1:4]
    count = size_x * size_y * size_z
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=int(offset)).reshape(size_z, size_y, size_x)


def region_classes(names_file: Path) -> np.ndarray:
    """A lookup table from AAL region index (0..255) to merged class index."""
    table = np.zeros(256, dtype=np.uint8)
    for line in names_file.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            table[int(fields[0])] = AAL_GROUPS[int(fields[2]) // 1000]
    return table


def centred_window(present: np.ndarray, size: int) -> slice:
    """`size` positions centred on the True span of `present`, kept inside the array."""
    first, last = np.flatnonzero(present)[[0, -1]]
    start = (first + last + 1 - size) // 2
    start = min(max(start, 0), len(present) - size)
    return slice(start, start + size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder with ch2.nii.gz, aal.nii.gz and aal.nii.txt")
    parser.add_argument("--out", type=Path, default=BRAIN_FILE)
    arguments = parser.parse_args()
    t1 = read_nifti(arguments.source / "ch2.nii.gz")
    regions = read_nifti(arguments.source / "aal.nii.gz")
    if t1.shape != regions.shape:
        raise ValueError(f"The T1 {t1.shape} and the labels {regions.shape} are not on one grid.")
    labels = region_classes(arguments.source / "aal.nii.txt")[regions]
    slices = np.flatnonzero(labels.any(axis=(1, 2)))
    rows = centred_window(labels.any(axis=(0, 2)), HEIGHT)
    columns = centred_window(labels.any(axis=(0, 1)), WIDTH)
    images = t1[slices, rows, columns][:, ::-1]  # anterior up
    masks = labels[slices, rows, columns][:, ::-1]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=np.ascontiguousarray(images), masks=np.ascontiguousarray(masks), slices=slices.astype(np.int16))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_bytes(buffer.getvalue())
    shares = np.bincount(masks.ravel(), minlength=len(CLASS_NAMES)) / masks.size
    print(f"{arguments.out}: {len(slices)} slices (z {slices[0]}..{slices[-1]}) of {HEIGHT}x{WIDTH}, {len(buffer.getvalue()) / 1e6:.2f} MB")
    for name, share in zip(CLASS_NAMES, shares):
        print(f"  {name:<42} {share:7.2%}")


if __name__ == "__main__":
    main()
