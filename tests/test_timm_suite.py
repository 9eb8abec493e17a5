"""timm's own model-contract tests, run unchanged on our registered models.

The source release of the installed timm is fetched from the package registry once (``pip download --no-binary
:all: --no-deps timm==<version>``, cached in ``$FOCALMOD_CACHE`` or ``~/.cache/focalmod``); its
``tests/test_models.py`` is copied byte for byte next to `timm_models_conftest.py` (the only glue: it imports focalmod
and points the file's model listing at our models) and run in a pytest subprocess.

Models small enough for CPU (the tiny 2D classifiers, 5.9-28.7 M parameters, <= 4.5 GMACs at 224, where
TorchScript/FX of one model takes seconds on 2 cores): FocalNet-T SRF/LRF/isotropic and HorNet-T 7x7/GF. Not run:
the small/base/large/xlarge/huge FocalNets and HorNet S/B/L (the same code as the tiny ones at 22-690 M parameters,
minutes per model here), and the 1D/3D models and Focal-UNets (timm's tests check 2D image classifiers:
``assert len(spatial_axis) == 2``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import timm

REPO = Path(__file__).resolve().parents[1]
CPU_MODELS = ("focalnet_tiny_srf", "focalnet_tiny_lrf", "focalnet_tiny_iso", "hornet_tiny_7x7", "hornet_tiny_gf")
# timm's model-contract tests (markers forward, backward, cfg, torchscript, features, fxforward, fxbackward; the
# last is unmarked there): every parametrisation of each runs on every model in CPU_MODELS.
TIMM_TESTS = (
    "test_model_forward",
    "test_model_backward",
    "test_model_default_cfgs",
    "test_model_forward_torchscript",
    "test_model_forward_features",
    "test_model_forward_intermediates_features",
    "test_model_forward_intermediates",
    "test_model_forward_fx",
    "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
)
MARKERS = ("base", "cfg", "cfg_nonstd", "torchscript", "features", "fxforward", "fxbackward", "forward", "backward",
           "timeout")


def timm_test_models(version: str = timm.__version__) -> bytes:
    """`tests/test_models.py` of timm's source release `version`, from the cache or the package registry."""
    cache = Path(os.environ.get("FOCALMOD_CACHE", Path.home() / ".cache" / "focalmod")) / f"timm-{version}-sdist"
    archive = cache / f"timm-{version}.tar.gz"
    if not archive.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", f"timm=={version}",
               "-d", str(cache), "--quiet"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"package registry unreachable: `pip download timm=={version}` timed out after 300 s")
        if proc.returncode != 0 or not archive.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            if any(w in " ".join(tail).lower() for w in ("connection", "resolve", "network", "timed out", "proxy")):
                pytest.skip(f"package registry unreachable, cannot fetch timm=={version}'s source: {' '.join(tail)}")
            raise RuntimeError(f"pip download timm=={version} --no-binary :all: failed:\n" + "\n".join(tail))
    with tarfile.open(archive) as tar:
        return tar.extractfile(f"timm-{version}/tests/test_models.py").read()


@pytest.mark.slow
def test_timm_model_suite_passes_on_our_models(tmp_path):
    (tmp_path / "test_models.py").write_bytes(timm_test_models())
    shutil.copy(REPO / "tests" / "timm_models_conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n" + "".join(f"    {m}\n" for m in MARKERS))
    env = {**os.environ, "FOCALMOD_TIMM_MODELS": ",".join(CPU_MODELS), "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("GITHUB_ACTIONS", None)  # the file's full (non-CI) selection
    cmd = [sys.executable, "-m", "pytest", "-c", "pytest.ini", "--rootdir", ".", "-p", "no:cacheprovider", "-q",
           "-rA", "-W", "ignore::DeprecationWarning", *(f"test_models.py::{t}" for t in TIMM_TESTS)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    passed = set(re.findall(r"^PASSED test_models\.py::(\w+)\[(?:\d+-)?focalmod_(\w+)(?:\.\w+)?\]", out, re.M))
    missing = [(t, m) for t in TIMM_TESTS for m in CPU_MODELS if (t, m) not in passed]
    assert not missing, f"timm tests that did not run and pass on a model: {missing}\n{out[-3000:]}"
    summary = out.strip().splitlines()[-1]
    assert "skipped" not in summary and "failed" not in summary and "error" not in summary, summary
