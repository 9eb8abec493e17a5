"""The figure CLI lives with the other CLIs now: `python -m tasks.viz` (same options). The library holds no CLIs."""
import sys

sys.exit("python -m focalmod.viz moved: run `python -m tasks.viz` (same options)")
