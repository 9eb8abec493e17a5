"""Glue for timm's own `tests/test_models.py` (copied unchanged next to this file, which becomes its conftest.py by
tests/test_timm_suite.py): import focalmod and point the file's model listing at our models.

Nothing else is changed: timm's filters, sizes and assertions apply as written. `timm.list_models` keeps every
argument's meaning, except that the models it lists are ours (module ``focalmod_models``, restricted to the names
in ``FOCALMOD_TIMM_MODELS``); a `module=` filter naming timm modules whose models support `forward_intermediates`
is answered with our module, since every focalmod 2D backbone implements that API.
"""
import os

import timm
import timm.models

import focalmod  # noqa: F401  (registers focalmod_* in timm)

_original_list_models = timm.list_models
_OURS = {f"focalmod_{name}" for name in os.environ["FOCALMOD_TIMM_MODELS"].split(",")}


def _list_our_models(filter="", module="", pretrained=False, exclude_filters="", name_matches_cfg=False,
                     include_tags=None):
    names = _original_list_models(filter, module="focalmod_models", pretrained=pretrained,
                                  exclude_filters=exclude_filters, name_matches_cfg=name_matches_cfg,
                                  include_tags=include_tags)
    return [n for n in names if n.split(".", 1)[0] in _OURS]


timm.list_models = timm.models.list_models = _list_our_models
