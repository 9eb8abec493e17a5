"""The figure CLI lives with the other CLIs now: `python -m tasks.viz` (see its --help). The library holds no CLIs."""
import sys

sys.exit("python -m focalmod.viz moved: run `python -m tasks.viz` (--help lists its options)")
