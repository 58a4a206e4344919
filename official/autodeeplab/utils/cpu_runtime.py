"""How a search process uses the CPU, chosen once from the crop size before TensorFlow is imported.

Small crops (the quick search configurations, <= `SMALL_CROP`) are many tiny ops; the paper's crop
(321 px) is fewer, larger ones. Three process-wide choices follow from that, each measured side by
side on 2 CPU cores (AMD EPYC; search supernet L=12, F=8, batch 2, recomputation), plus one
setting for every search:

* oneDNN kernels (TF_ENABLE_ONEDNN_OPTS, read when TensorFlow is imported; x86 builds default to
  on). oneDNN pays a fixed cost per call (layout reorders; depthwise convolutions run as generic
  grouped convolutions). Weight + arch step, oneDNN off / on: 65 px 1.36 / 2.19 s, 129 px
  3.62 / 3.87 s, 193 px 6.94 / 7.31 s, 321 px 15.4 / 13.0 s: off for small crops.
* TensorFlow's BFC allocator for CPU tensors (TF_CPU_ALLOCATOR_USE_BFC) and at most two glibc
  malloc arenas (mallopt M_ARENA_MAX): tensors then come from one pool instead of per-thread malloc
  arenas that keep what they freed. 65 px peak RSS 1.48 -> 1.30-1.42 GiB (fourteen runs), step
  time unchanged (arenas alone slowed the step down, up to 1.6x, from contention). At 321 px peak
  RSS was higher with them (2.27 vs 2.15 GiB) for the same step time: default malloc there.
* one thread per op, at every crop (TF_NUM_INTRAOP_THREADS=1; TensorFlow's inter-op pool keeps
  one thread per core): a supernet layer is hundreds of independent ops (8 candidates on every
  edge of every node), which the inter-op threads run side by side, while splitting each op over
  the cores adds a synchronisation per op. Weight step with recomputation, one thread per op /
  TensorFlow's default (as many as cores), measured in turns: 65 px 0.46 / 0.54-0.61 s (0.42 /
  0.60 s without recomputation), 129 px 1.23 / 1.60 s, 193 px 2.66 / 3.16 s, 321 px (arch-only
  graph) 4.89 / 6.79 s; peak RSS unchanged. Only the search sets it: the retrain network is a
  chain of large convolutions that needs the cores inside each op.
* the search step's while loops kept functional (`functional_loops`, decided where the step is
  traced, see `training/distribute.functional_while_loops`): 65 px first step 16.6 -> 14.9 s,
  step 1.51 -> 1.24 s, peak RSS 1.54 -> 1.42 GiB; at 321 px the step was 1.3x slower (lowered
  loops overlap layers and prune the arch-only graph's weight gradients).

A setting already in the environment always wins; once TensorFlow is imported it is too late to
change the first three, so search binaries call `configure_for_crop` first.
"""
from __future__ import annotations

import ctypes
import os
import sys

ONEDNN_ENV = 'TF_ENABLE_ONEDNN_OPTS'
ALLOCATOR_ENV = 'TF_CPU_ALLOCATOR_USE_BFC'
INTRA_OP_ENV = 'TF_NUM_INTRAOP_THREADS'  # threads each op may split its work over
SMALL_CROP = 224  # crops up to this side count as small (the oneDNN ratio crosses 1 near 220 px)
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
_FALSE = ('0', 'false', 'False')


def small_crop(crop_size: int | None) -> bool:
  return crop_size is not None and crop_size <= SMALL_CROP


def onednn_enabled() -> bool:
  """What TensorFlow does (or will do when imported) in this process."""
  return os.environ.get(ONEDNN_ENV, '1') not in _FALSE


def pooled_allocator() -> bool:
  return os.environ.get(ALLOCATOR_ENV, '0') not in _FALSE


def functional_loops(crop_size: int | None) -> bool:
  """Whether a search step traced for `crop_size` keeps its while loops functional."""
  return small_crop(crop_size)


def _limit_malloc_arenas() -> bool:
  try:
    return ctypes.CDLL('libc.so.6').mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1
  except (OSError, AttributeError):  # not glibc: nothing to tune
    return False


def configure_for_crop(crop_size: int | None) -> str:
  """Sets this process's (and its children's) CPU settings for `crop_size` unless TensorFlow is
  already imported or the environment already says; returns `describe()`."""
  if crop_size is not None and 'tensorflow' not in sys.modules:
    os.environ.setdefault(INTRA_OP_ENV, '1')
    small = small_crop(crop_size)
    os.environ.setdefault(ONEDNN_ENV, '0' if small else '1')
    if small and ALLOCATOR_ENV not in os.environ:
      os.environ[ALLOCATOR_ENV] = 'true'
      _limit_malloc_arenas()
  return describe()


def threads_per_op() -> str:
  """TF_NUM_INTRAOP_THREADS as set, or 'cores' (TensorFlow's default: one per core)."""
  return os.environ.get(INTRA_OP_ENV) or 'cores'


def describe() -> str:
  """For start-up lines: 'oneDNN kernels off, pooled CPU allocator, 1 thread per op'."""
  threads = threads_per_op()
  return (f'oneDNN kernels {"on" if onednn_enabled() else "off"}, '
          f'{"pooled" if pooled_allocator() else "malloc"} CPU allocator, '
          f'{threads} thread{"" if threads == "1" else "s"} per op')
