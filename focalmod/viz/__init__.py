"""Interpretability for focal modulation: gate maps and modulator magnitude per stage, and overlay figures.

    maps = modulation_maps(model, x)                 # last block of every stage
    plot_modulation_maps(x, maps, "maps.png")        # input | |h(ctx_all)| | gate 0..L

CLI: ``python -m tasks.viz --model focalnet_tiny_srf --image img.png --figure fig.png``.
"""
from .figures import plot_modulation_maps, to_display, upsample_map
from .maps import BlockMaps, find_modulations, modulation_maps, quantile_mask

__all__ = [
    "BlockMaps",
    "find_modulations",
    "modulation_maps",
    "plot_modulation_maps",
    "quantile_mask",
    "to_display",
    "upsample_map",
]
