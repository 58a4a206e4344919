"""Whether TensorFlow runs its oneDNN kernels on the CPU, chosen per process from the crop size.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported, and x86 builds default to
oneDNN. oneDNN pays a fixed cost per call (layout reorders; depthwise convolutions run as generic
grouped convolutions) that dominates when tensors are small. Measured side by side on 2 CPU cores
(AMD EPYC), the search supernet (L=12, F=8, batch 2) stepped 1.9x faster with TensorFlow's own
kernels at 65 px, and 1.2x slower at 321 px, the paper's crop (see `SMALL_CROP` for the crossover).
So binaries call `choose_for_crop` before they import TensorFlow; a TF_ENABLE_ONEDNN_OPTS already
in the environment always wins.
"""
from __future__ import annotations

import os
import sys

ENV = 'TF_ENABLE_ONEDNN_OPTS'
# Crops up to this side run without oneDNN. Weight + arch search step with recomputation, oneDNN
# off / on (2 cores, AMD EPYC, one after the other): 65 px 1.36 / 2.19 s, 129 px 3.62 / 3.87 s,
# 193 px 6.94 / 7.31 s, 321 px 15.4 / 13.0 s; the ratio crosses 1 near 220 px.
SMALL_CROP = 224


def enabled() -> bool:
  """What TensorFlow does (or will do when imported) in this process."""
  return os.environ.get(ENV, '1') not in ('0', 'false', 'False')


def choose_for_crop(crop_size: int | None) -> bool:
  """Sets TF_ENABLE_ONEDNN_OPTS for this process and its children unless it is already set or
  TensorFlow is already imported (then it is too late to change); returns `enabled()`."""
  if crop_size is not None and 'tensorflow' not in sys.modules:
    os.environ.setdefault(ENV, '0' if crop_size <= SMALL_CROP else '1')
  return enabled()
