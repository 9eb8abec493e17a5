"""Decathlon-layout evaluation sets from real brain MRI shipped by registry packages.

Each set holds a dozen 3D cases: the blocks of a 2 x 3 x 2 grid over the brain's bounding box (left/right,
posterior/middle/anterior, inferior/superior), so the validation cases are brain regions the network never saw.
Files are written as scanners write them: uint8 intensities and an affine whose origin is the block's world position
(1 mm voxels).

- `mni-tissue`: the ICBM 2009a nonlinear symmetric MNI152 T1 template with its grey / white-matter probability maps
  (nilearn's wheel, `nilearn/datasets/data/`); label = the tissue whose probability is above 0.5.
- `colin-structures`: Colin27, one person's T1 (27 scans averaged; Debian `mricron-data`, `ch2.nii.gz`), with the
  AAL atlas drawn on that brain (`aal.nii.gz`): cerebral cortex, deep grey nuclei (caudate, putamen, pallidum,
  thalamus) and cerebellum. These three share the grey-matter intensity: only shape and context tell them apart.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .writers import Provenance, fresh_dir, write_decathlon

__all__ = ["COLIN", "MNI", "brain_blocks", "write_colin_structures", "write_mni_tissue"]

MNI = Provenance("mni-tissue", "nilearn (PyPI), nilearn/datasets/data/mni_icbm152_*_09a_converted.nii.gz",
                 "ICBM 2009a templates: free use with the copyright notice (McConnell Brain Imaging Centre)",
                 "MNI152 2009a T1 template, grey/white matter labels (probability > 0.5), 12 blocks")
COLIN = Provenance("colin-structures", "mricron-data (Debian), templates/ch2.nii.gz + aal.nii.gz",
                   "BSD-3-clause (MRIcron distribution); AAL: Tzourio-Mazoyer et al. 2002",
                   "Colin27 T1, AAL cortex / deep grey nuclei / cerebellum labels, 12 blocks")
GRID = (2, 3, 2)
COLIN_DIR = Path("/usr/share/mricron/templates")
AAL_DEEP_GREY = range(71, 79)  # caudate, putamen, pallidum, thalamus (left and right)
AAL_CEREBELLUM = range(91, 117)  # cerebellar hemispheres and vermis


def brain_blocks(mask: np.ndarray, grid: tuple[int, int, int] = GRID, margin: int = 4
                 ) -> Iterator[tuple[str, tuple[slice, ...]]]:
    """`(block id, slices)` of the `grid` blocks tiling the bounding box of `mask` (plus `margin` voxels)."""
    nonzero = np.argwhere(mask)
    lo = np.maximum(nonzero.min(0) - margin, 0)
    hi = np.minimum(nonzero.max(0) + 1 + margin, mask.shape)
    edges = [np.linspace(lo[a], hi[a], grid[a] + 1).round().astype(int) for a in range(3)]
    for i in range(grid[0]):
        for j in range(grid[1]):
            for k in range(grid[2]):
                yield f"{i}{j}{k}", tuple(slice(edges[a][n], edges[a][n + 1]) for a, n in enumerate((i, j, k)))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    top = np.percentile(image[image > 0], 99.9) if (image > 0).any() else 1.0
    return np.clip(image / top * 255.0, 0, 255).round().astype(np.uint8)


def _cases(prefix: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray):
    for block, slices in brain_blocks(label > 0):
        shifted = affine.copy()
        shifted[:3, 3] = affine[:3, :3] @ np.array([s.start for s in slices]) + affine[:3, 3]
        yield f"{prefix}_{block}", image[slices], label[slices], shifted


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found (install the package named in this set's description, or pass "
                                "--source)")
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


def nilearn_data_dir() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def write_mni_tissue(out: Path, source: Path | None = None) -> Path:
    """Write the `mni-tissue` set (background, grey matter, white matter) to `out`."""
    source = Path(source) if source is not None else nilearn_data_dir()
    names = {k: source / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
    t1, affine = _load(names["t1"])
    gm, wm = (_load(names[k])[0].astype(np.float32) for k in ("gm", "wm"))
    gm, wm = gm / max(gm.max(), 1e-6), wm / max(wm.max(), 1e-6)  # stored as uint8 0..255 or float 0..1
    label = np.where((gm > 0.5) & (gm >= wm), 1, np.where((wm > 0.5) & (wm > gm), 2, 0)).astype(np.uint8)
    root = write_decathlon(fresh_dir(out), "MNI152Tissue", MNI.description, "MRI",
                           ["background", "grey_matter", "white_matter"], _cases("mni", _to_uint8(t1), label, affine))
    MNI.record(root, "nilearn", source, {"cases": int(np.prod(GRID))})
    return root


def write_colin_structures(out: Path, source: Path = COLIN_DIR) -> Path:
    """Write the `colin-structures` set (background, cortex, deep grey nuclei, cerebellum) to `out`."""
    source = Path(source)
    t1, affine = _load(source / "ch2.nii.gz")
    aal, aal_affine = _load(source / "aal.nii.gz")
    if aal.shape != t1.shape or not np.allclose(aal_affine, affine):
        raise ValueError(f"{source}: aal.nii.gz and ch2.nii.gz are not on one grid")
    aal = aal.astype(np.int64)
    label = np.where(np.isin(aal, AAL_DEEP_GREY), 2, np.where(np.isin(aal, AAL_CEREBELLUM), 3, (aal > 0).astype(int)))
    root = write_decathlon(fresh_dir(out), "Colin27Structures", COLIN.description, "MRI",
                           ["background", "cortex", "deep_grey", "cerebellum"],
                           _cases("colin", _to_uint8(t1), label.astype(np.uint8), affine))
    COLIN.record(root, "mricron-data", source, {"cases": int(np.prod(GRID))})
    return root
