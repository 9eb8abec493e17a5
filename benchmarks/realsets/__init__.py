"""Evaluation sets the project did not design (issue #14): real recordings, photos and scans that installable
packages ship, written in the on-disk layouts the task CLIs read. A recipe change is judged on all of them.

    python -m benchmarks.realsets list
    python -m benchmarks.realsets write drums runs/realsets/drums      # then: python -m tasks.audio.esc50 --data ...

| set | modality | layout | source package |
|---|---|---|---|
| drums | sound | ESC-50 | hydrogen-drumkits (Debian) |
| phrases | sound | ESC-50 | hedgewars-data (Debian) |
| languages | sound | ESC-50 | tuxpaint-stamps-default (Debian) |
| voices | sound | ESC-50 | hedgewars-data (Debian) |
| fashion | image | image folders | dataset-fashion-mnist (Debian) |
| faces | image | image folders | scikit-image (PyPI) |
| stamps | image | image folders | tuxpaint-stamps-default (Debian) |
| objects | image | image folders | tuxpaint-stamps-default (Debian) |
| mni-tissue | MRI | Decathlon | nilearn (PyPI) |
| colin-structures | MRI | Decathlon | mricron-data (Debian) |

Nothing is downloaded: each generator reads the installed package (or `--source`) and says which to install.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .images import FACES, FASHION, OBJECTS, STAMPS, write_faces, write_fashion, write_objects, write_stamps
from .scans import COLIN, MNI, write_colin_structures, write_mni_tissue
from .sounds import DRUMS, LANGUAGES, PHRASES, VOICES, write_drums, write_languages, write_phrases, write_voices
from .writers import Provenance

__all__ = ["REALSETS", "RealSet"]


@dataclass(frozen=True)
class RealSet:
    """An evaluation set: where it comes from, which task CLI reads it, and its generator `write(out, source)`."""

    provenance: Provenance
    task: str
    write: Callable


REALSETS = {
    s.provenance.name: s
    for s in (
        RealSet(DRUMS, "tasks.audio.esc50", write_drums),
        RealSet(PHRASES, "tasks.audio.esc50", write_phrases),
        RealSet(LANGUAGES, "tasks.audio.esc50", write_languages),
        RealSet(VOICES, "tasks.audio.esc50", write_voices),
        RealSet(FASHION, "tasks.imagenet.train", write_fashion),
        RealSet(FACES, "tasks.imagenet.train", write_faces),
        RealSet(STAMPS, "tasks.imagenet.train", write_stamps),
        RealSet(OBJECTS, "tasks.imagenet.train", write_objects),
        RealSet(MNI, "tasks.medical.train", write_mni_tissue),
        RealSet(COLIN, "tasks.medical.train", write_colin_structures),
    )
}
