"""How a process uses its machine: resolved once, in the binary, before TensorFlow is imported.

Some of TensorFlow's choices are fixed when it is imported (the oneDNN kernels, the CPU allocator,
the size of each op's thread pool), so a binary resolves a `Runtime` from what it is about to run
(the job and, for the search, its crop) and the device it finds, applies it, and only then imports
TensorFlow; the library receives the object and never inspects tensor shapes or environment
variables to choose runtime behaviour. The choices and why (figures: docs/performance.md):

* oneDNN kernels: they pay a fixed cost per call (layout reorders, depthwise convolutions run as
  grouped ones), which dominates the supernet's many small ops at small crops; off there.
* TensorFlow's pooled (BFC) CPU allocator and at most two glibc malloc arenas, at small search
  crops: tensors then come from one pool instead of per-thread arenas that keep what they freed.
* One thread per op for the search: a supernet layer is hundreds of independent ops, which the
  inter-op threads run side by side; splitting each op over the cores only adds synchronisation.
  The retrain network is a chain of large convolutions and keeps TensorFlow's default.
* Functional while loops for the search at small crops (`distribute.functional_while_loops`):
  each loop body is instantiated once instead of being lowered and inlined into the step.
* Grappler: the search keeps only its arithmetic optimizer (it merges the supernet's thousands
  of identical small constants); the other jobs turn it off (start-up time, same step time).

On a GPU or TPU none of the CPU choices apply. A setting already in the environment always wins.

Precision (`--precision`, `runtime_options.precision`): 'float32', or Keras' mixed policies
'bfloat16' / 'float16' (float32 variables, reduced-precision activations; float16 trains with a
dynamic loss scale, `training/loss_scale.py`). TPUs have no float16 matrix units, so float16 is
refused there; `modeling/precision.py` sets the policy and checks the device's kernels.
This module imports nothing heavy, so tests can resolve runtimes for any device (`probe_device`
takes the environment and the device directory as arguments).
"""
from __future__ import annotations

import ctypes
import dataclasses
import glob
import os
import sys
from typing import Mapping

from official.autodeeplab.errors import UserInputError

ONEDNN_ENV = 'TF_ENABLE_ONEDNN_OPTS'
ALLOCATOR_ENV = 'TF_CPU_ALLOCATOR_USE_BFC'
INTRA_OP_ENV = 'TF_NUM_INTRAOP_THREADS'  # threads each op may split its work over
SMALL_CROP = 224  # search crops up to this side count as small (where oneDNN stops paying)
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
_FALSE = ('0', 'false', 'False')
JOBS = ('search', 'train', 'inference')
DEVICES = ('cpu', 'gpu', 'tpu')
PRECISIONS = ('float32', 'bfloat16', 'float16')


@dataclasses.dataclass(frozen=True)
class Runtime:
  """One process's runtime choices.

  Attributes:
    device: 'cpu', 'gpu' or 'tpu': what the process computes on.
    num_cores: CPU cores of the machine.
    onednn: TensorFlow's oneDNN kernels (CPU).
    pooled_allocator: TensorFlow's BFC allocator for CPU tensors, with few malloc arenas.
    threads_per_op: threads one op may use; 0 for TensorFlow's default (one per core).
    functional_loops: while loops traced by the search step stay functional (not lowered).
    graph_optimizer: Grappler: 'default', 'off', or 'deduplicate' (arithmetic optimizer only).
    precision: 'float32', 'bfloat16' or 'float16' (`PRECISIONS`): what activations compute in.
    float32_batch_norm: reduced-precision batch norm computed by the float32 kernel (CPU: oneDNN's
      bfloat16 batch norm was slower than casting around its float32 one).
  """
  device: str = 'cpu'
  num_cores: int = 1
  onednn: bool = True
  pooled_allocator: bool = False
  threads_per_op: int = 0
  functional_loops: bool = False
  graph_optimizer: str = 'default'
  precision: str = 'float32'
  float32_batch_norm: bool = True

  @property
  def policy(self) -> str:
    """The Keras dtype policy: 'float32', 'mixed_bfloat16' or 'mixed_float16'."""
    return self.precision if self.precision == 'float32' else f'mixed_{self.precision}'

  def describe(self) -> str:
    """For start-up lines: 'CPU, 2 cores (oneDNN kernels off, pooled CPU allocator, 1 thread per
    op), float32' or 'GPU:0, float16 (mixed, dynamic loss scale)'."""
    precision = {'float32': 'float32', 'bfloat16': 'bfloat16 (mixed)',
                 'float16': 'float16 (mixed, dynamic loss scale)'}[self.precision]
    if self.device != 'cpu':
      return f'{self.device.upper()}:0, {precision}'
    threads = str(self.threads_per_op) if self.threads_per_op else 'cores'
    if self.onednn and not self.pooled_allocator and not self.threads_per_op:
      return (f'CPU, {self.num_cores} cores (TensorFlow\'s default kernels, allocator and '
              f'threads), {precision}')
    return (f'CPU, {self.num_cores} cores (oneDNN kernels {"on" if self.onednn else "off"}, '
            f'{"pooled" if self.pooled_allocator else "malloc"} CPU allocator, '
            f'{threads} thread{"" if threads == "1" else "s"} per op), {precision}')

  def environment(self) -> dict[str, str]:
    """The variables TensorFlow reads at import for these choices (CPU only)."""
    if self.device != 'cpu':
      return {}
    env = {ONEDNN_ENV: '1' if self.onednn else '0'}
    if self.pooled_allocator:
      env[ALLOCATOR_ENV] = 'true'
    if self.threads_per_op:
      env[INTRA_OP_ENV] = str(self.threads_per_op)
    return env

  def apply(self) -> None:
    """Sets this process's (and its children's) environment; call it before TensorFlow is
    imported, after which the variables no longer take effect (then it does nothing)."""
    if 'tensorflow' in sys.modules:
      return
    os.environ.update(self.environment())
    if self.device == 'cpu' and self.pooled_allocator:
      _limit_malloc_arenas()


def probe_device(strategy: str = 'default', environ: Mapping[str, str] | None = None,
                 device_glob: str = '/dev/nvidia[0-9]*') -> str:
  """The device a process will compute on, found without TensorFlow: 'tpu' for --strategy=tpu,
  'gpu' when an NVIDIA device node exists and CUDA_VISIBLE_DEVICES does not hide it, else 'cpu'."""
  environ = os.environ if environ is None else environ
  if strategy == 'tpu':
    return 'tpu'
  visible = environ.get('CUDA_VISIBLE_DEVICES')
  if visible is not None and visible.strip() in ('', '-1'):
    return 'cpu'
  return 'gpu' if glob.glob(device_glob) else 'cpu'


def check_precision(precision: str, device: str = 'cpu',
                    source: str = 'runtime_options.precision') -> str:
  """`precision` if it is one of `PRECISIONS` and the device can train in it, else a one-line
  UserInputError naming the setting (`source`) and the choices."""
  if precision not in PRECISIONS:
    raise UserInputError(f'{source}={precision}: expected one of {", ".join(PRECISIONS)}')
  if precision == 'float16' and device == 'tpu':
    raise UserInputError(f'{source}=float16: TPUs compute in bfloat16, not float16; choices '
                         'with --strategy=tpu: bfloat16, float32')
  return precision


def resolve(job: str, crop_size: int | None = None, device: str = 'cpu',
            environ: Mapping[str, str] | None = None, num_cores: int | None = None,
            precision: str = 'float32') -> Runtime:
  """The runtime for `job` ('search', 'train' or 'inference') on `device`; for the search,
  `crop_size` is its training crop. Variables already in `environ` win."""
  if job not in JOBS:
    raise ValueError(f'job {job!r}: expected one of {JOBS}')
  if device not in DEVICES:
    raise ValueError(f'device {device!r}: expected one of {DEVICES}')
  check_precision(precision, device)
  environ = os.environ if environ is None else environ
  search = job == 'search'
  small = search and crop_size is not None and crop_size <= SMALL_CROP
  on_cpu = device == 'cpu'
  onednn = not (on_cpu and small)
  pooled = on_cpu and small
  threads = 1 if on_cpu and search else 0
  if ONEDNN_ENV in environ:
    onednn = environ[ONEDNN_ENV] not in _FALSE
  if ALLOCATOR_ENV in environ:
    pooled = environ[ALLOCATOR_ENV] not in _FALSE
  if environ.get(INTRA_OP_ENV, '').isdigit():
    threads = int(environ[INTRA_OP_ENV])
  return Runtime(device=device, num_cores=num_cores or os.cpu_count() or 1, onednn=onednn,
                 pooled_allocator=pooled, threads_per_op=threads,
                 functional_loops=on_cpu and small,
                 graph_optimizer='deduplicate' if search else 'off', precision=precision,
                 float32_batch_norm=on_cpu)


def _limit_malloc_arenas() -> bool:
  try:
    return ctypes.CDLL('libc.so.6').mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1
  except (OSError, AttributeError):  # not glibc: nothing to tune
    return False
