"""Shared test settings: deterministic seeds and CPU thread count kept small (CI has 2 cores)."""
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never download: the Hugging Face Hub is offline (pretrained tests build a cache in a temporary HF_HOME).
os.environ["HF_HUB_OFFLINE"] = "1"
if "huggingface_hub" in sys.modules:  # a plugin imported it before this file: its constants are already read
    sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
torch.set_num_threads(min(2, os.cpu_count() or 1))

# `tasks` and `benchmarks` are not installed (the wheel ships focalmod only): tests and the CLIs they start in
# subprocesses import them from this checkout.
REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
