"""Sound evaluation sets in the ESC-50 layout, from real recordings shipped by Debian packages.

- `drums`: drum hits recorded from acoustic kits (`hydrogen-drumkits`): kick, snare, hi-hat, tom, cymbal. The folds
  are kits: every test fold holds kits the network never heard (the ESC-50 rule, one source in one fold). Each clip is
  one hit (one velocity layer of one instrument) starting within the first 0.5 s, padded with silence to 5 s.
- `phrases`: which phrase a voice says, from the acted voice packs of Hedgewars (`hedgewars-data`: eleven
  English voices, 31 phrases each, e.g. "hello", "traitor", "take cover"; the jump, "ow" and "ooff" grunts pooled
  into one class each). The folds are voices: the test fold's speakers are never heard in training.
- `languages`: which language is spoken, from the stamp names that volunteers recorded for Tux Paint in eight
  languages (`tuxpaint-stamps-default`: `<stamp>_desc_<lang>.ogg`, about 1 s each). A clip is four different
  names of one language, 0.25 s apart; the folds are stamps (a stamp's recordings in every language sit in one fold).
- `voices`: who speaks, from the same Hedgewars voice packs as `phrases` with the roles swapped: the class is the
  voice pack (all 15: the 11 English ones and Default_es, Default_pl, Default_ru, Russian_pl), the folds are phrases,
  so the test fold holds phrases never heard in training, said by voices that were.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np

from .writers import ESC50_RATE, Provenance, SoundClip, fresh_dir, read_mono, write_esc50

__all__ = ["DRUMS", "LANGUAGES", "PHRASES", "VOICES", "write_drums", "write_languages", "write_phrases", "write_voices"]

DRUMS = Provenance(
    "drums", "hydrogen-drumkits (Debian)", "per kit: GPL-2+, CC-BY-3.0, CC-BY-SA-3.0, CC0 (see its copyright file)",
    "drum hits of 9 acoustic kits: kick, snare, hi-hat, tom, cymbal; folds = kits")
PHRASES = Provenance(
    "phrases", "hedgewars-data (Debian), Data/Sounds/voices", "GFDL-1.3",
    "31 phrases acted by 11 English voice packs; folds = voices (unseen speakers at test)")
LANGUAGES = Provenance(
    "languages", "tuxpaint-stamps-default (Debian)", "GPL-2",
    "spoken stamp names in 8 languages (be bg ca el es fr ro ru), 4 names per 5 s clip; folds = stamps")
VOICES = Provenance(
    "voices", "hedgewars-data (Debian), Data/Sounds/voices", "GFDL-1.3",
    "which of 15 voice packs speaks, from the phrases every pack says; folds = phrases (unseen phrases at test)")

HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
# Acoustic kits only (the electronic ones, ElectricEmpireKit, HardElectro1, VariBreaks, are drum machines), and the
# kit each fold holds: folds of similar size, every fold with every class.
DRUM_FOLDS = {
    "BJA_Pacific": 1, "ColomboAcousticDrumkit": 5, "ForzeeStereo": 2, "Millo-Drums_v.1": 4, "Millo_MultiLayered2": 4,
    "Millo_MultiLayered3": 5, "The Black Pearl 1.0": 3, "rumpf_kit_z01_h2": 5, "Audiophob": 4,
}
DRUM_CLASSES = {  # class: instrument-name pattern (first match wins, in this order)
    "kick": r"kick|bass ?drum",
    "hihat": r"h(i)?[- ]?hat|\bhh\b|hat\b",
    "cymbal": r"crash|ride|china|splash|cymbal",
    "snare": r"snare",
    "tom": r"\btom",
}
HEDGEWARS_DIR = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
PHRASE_FOLDS = {"British": 1, "Classic": 1, "Default": 2, "Default_uk": 2, "HillBilly": 3, "Mobster": 3, "Pirate": 4,
                "Robot": 4, "Russian": 5, "Singer": 5, "Surfer": 5}  # the English voice packs
PHRASE_GROUPS = {"Jump": "jump", "Ow": "ow", "Ooff": "ooff"}  # numbered variants of one grunt: one class
LANGUAGE_CODES = ("be", "bg", "ca", "el", "es", "fr", "ro", "ru")
WORDS_PER_CLIP = 4


def _missing(source: Path, package: str) -> FileNotFoundError:
    return FileNotFoundError(f"{source} not found: install the Debian package ({package.split()[0]}: "
                             f"apt-get install {package.split()[0]}) or pass --source")


def drum_class(instrument: str) -> str | None:
    """The drum class of a Hydrogen instrument name, None for other instruments (stick, clap, cowbell, ...)."""
    name = instrument.lower()
    if re.search(r"stick|rim ?click|roll", name):
        return None
    for label, pattern in DRUM_CLASSES.items():
        if re.search(pattern, name):
            return label
    return None


def kit_layers(kit_dir: Path) -> list[tuple[str, str, Path]]:
    """`(instrument name, drum class, sample file)` of every layer of a Hydrogen kit (`drumkit.xml`)."""
    root = ET.parse(kit_dir / "drumkit.xml").getroot()
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    out = []
    for instrument in root.iter(f"{ns}instrument"):
        name = (instrument.findtext(f"{ns}name") or "").strip()
        label = drum_class(name)
        if label is None:
            continue
        for element in instrument.iter(f"{ns}filename"):
            path = kit_dir / (element.text or "").strip()
            if element.text and path.is_file():
                out.append((name, label, path))
    return out


def write_drums(out: Path, source: Path = HYDROGEN_DIR, per_class_per_kit: int = 8, seed: int = 0) -> Path:
    """Write the drums set to `out` (ESC-50 layout + SOURCE.json); at most `per_class_per_kit` layers of each class
    from each kit (spread over its instruments), so no kit dominates a class."""
    source = Path(source)
    if not source.is_dir():
        raise _missing(source, DRUMS.package)
    rng = np.random.default_rng(seed)
    classes = list(DRUM_CLASSES)
    clips, counts = [], defaultdict(int)
    for kit_no, (kit, fold) in enumerate(sorted(DRUM_FOLDS.items())):
        if not (source / kit / "drumkit.xml").is_file():
            continue
        by_class: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
        for name, label, path in kit_layers(source / kit):
            by_class[label][name].append(path)
        for label, instruments in by_class.items():
            for n, path in enumerate(_round_robin(list(instruments.values()))[:per_class_per_kit]):
                hit = read_mono(path)
                onset = int(rng.uniform(0.0, 0.5) * ESC50_RATE)
                wave = np.concatenate([np.zeros(onset, np.float32), hit])
                clips.append(SoundClip(wave, fold, classes.index(label), label, f"k{kit_no:02d}{label}", chr(65 + n)))
                counts[f"{label}/fold{fold}"] += 1
    if not clips:
        raise FileNotFoundError(f"{source}: none of the kits {', '.join(DRUM_FOLDS)} found")
    root = write_esc50(fresh_dir(out), clips)
    DRUMS.record(root, "hydrogen-drumkits", source, dict(sorted(counts.items())))
    return root


def _round_robin(groups: list[list[Path]]) -> list[Path]:
    """The first item of every group, then the second of every group, ..."""
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


def phrase_class(stem: str) -> str:
    """`Jump2` -> `jump`, `Hello` -> `hello`, `Uh-oh` -> `uhoh`."""
    base = re.sub(r"\d+$", "", stem)
    return PHRASE_GROUPS.get(base, re.sub(r"[^a-z]", "", base.lower()))


def write_phrases(out: Path, source: Path = HEDGEWARS_DIR, seed: int = 0) -> Path:
    """Write the phrases set to `out`: every phrase that all the English voices of `PHRASE_FOLDS` say, one clip per
    recording, starting within the first 0.5 s."""
    source = Path(source)
    voices = [v for v in PHRASE_FOLDS if (source / v).is_dir()]
    if not voices:
        raise _missing(source, PHRASES.package)
    stems = {v: {p.stem for p in (source / v).glob("*.ogg")} for v in voices}
    common = sorted(set.intersection(*stems.values()))
    classes = sorted({phrase_class(s) for s in common})
    rng = np.random.default_rng(seed)
    clips, counts = [], defaultdict(int)
    for v_no, voice in enumerate(voices):
        for stem in common:
            label = phrase_class(stem)
            onset = np.zeros(int(rng.uniform(0.0, 0.5) * ESC50_RATE), np.float32)
            wave = np.concatenate([onset, read_mono(source / voice / f"{stem}.ogg")])
            take = re.sub(r"\D", "", stem) or "0"
            clips.append(SoundClip(wave, PHRASE_FOLDS[voice], classes.index(label), label, f"v{v_no:02d}{label}",
                                   chr(65 + int(take))))
            counts[f"fold{PHRASE_FOLDS[voice]}"] += 1
    root = write_esc50(fresh_dir(out), clips)
    PHRASES.record(root, "hedgewars-data", source, {"classes": len(classes), "voices": len(voices), **counts})
    return root


def _fold_of(stamp: str) -> int:
    return int(hashlib.sha1(stamp.encode()).hexdigest(), 16) % 5 + 1


def write_languages(out: Path, source: Path = TUXPAINT_DIR, clips_per_language: int = 40, seed: int = 0) -> Path:
    """Write the languages set to `out`: `clips_per_language` clips per language (8 per fold), each four stamp
    names of one fold read in that language."""
    source = Path(source)
    if not source.is_dir():
        raise _missing(source, LANGUAGES.package)
    recordings: dict[tuple[str, int], list[tuple[str, Path]]] = defaultdict(list)
    for path in sorted(source.rglob("*_desc_*.ogg")):
        stamp, _, lang = path.stem.rpartition("_desc_")
        if lang in LANGUAGE_CODES:
            recordings[(lang, _fold_of(str(path.parent.relative_to(source) / stamp)))].append((stamp, path))
    rng = np.random.default_rng(seed)
    gap = np.zeros(int(0.25 * ESC50_RATE), np.float32)
    clips, counts = [], {}
    per_fold = max(1, clips_per_language // 5)
    for target, lang in enumerate(LANGUAGE_CODES):
        for fold in range(1, 6):
            pool = recordings.get((lang, fold), [])
            picks = rng.permutation(len(pool))[: per_fold * WORDS_PER_CLIP]
            for n in range(len(picks) // WORDS_PER_CLIP):
                words = [pool[i] for i in picks[n * WORDS_PER_CLIP : (n + 1) * WORDS_PER_CLIP]]
                wave = np.concatenate([gap[: len(gap) // 2]] + [np.concatenate([read_mono(p), gap]) for _, p in words])
                clips.append(SoundClip(wave, fold, target, lang, f"{lang}{fold}{n:03d}", "A"))
            counts[f"{lang}/fold{fold}"] = len(picks) // WORDS_PER_CLIP
    if not clips:
        raise FileNotFoundError(f"{source}: no *_desc_<lang>.ogg recordings of {', '.join(LANGUAGE_CODES)}")
    root = write_esc50(fresh_dir(out), clips)
    LANGUAGES.record(root, "tuxpaint-stamps-default", source, counts)
    return root


def write_voices(out: Path, source: Path = HEDGEWARS_DIR, seed: int = 0) -> Path:
    """Write the voices set to `out`: every recording of a phrase that all the voice packs under `source` say, the
    class its voice pack, the fold its phrase (numbered grunts share a fold; phrases dealt to folds 1-5 in a
    hashed order, so the folds hold nearly equal numbers of phrases)."""
    source = Path(source)
    voices = sorted(v.name for v in source.iterdir() if v.is_dir() and any(v.glob("*.ogg"))) if source.is_dir() else []
    if not voices:
        raise _missing(source, VOICES.package)
    common = sorted(set.intersection(*({p.stem for p in (source / v).glob("*.ogg")} for v in voices)))
    phrases = sorted({phrase_class(s) for s in common}, key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    fold_of = {p: n % 5 + 1 for n, p in enumerate(phrases)}
    rng = np.random.default_rng(seed)
    clips, counts = [], defaultdict(int)
    for target, voice in enumerate(voices):
        for stem in common:
            fold = fold_of[phrase_class(stem)]
            onset = np.zeros(int(rng.uniform(0.0, 0.5) * ESC50_RATE), np.float32)
            wave = np.concatenate([onset, read_mono(source / voice / f"{stem}.ogg")])
            src = re.sub(r"[^a-z0-9]", "", stem.lower())
            clips.append(SoundClip(wave, fold, target, re.sub(r"[^a-z0-9_]", "", voice.lower()), src, chr(65 + target)))
            counts[f"fold{fold}"] += 1
    if not clips:
        raise FileNotFoundError(f"{source}: no phrase that all of {', '.join(voices)} say")
    root = write_esc50(fresh_dir(out), clips)
    VOICES.record(root, "hedgewars-data", source, {"classes": len(voices), "phrases": len(common),
                                                   **dict(sorted(counts.items()))})
    return root
