"""Strategy selection by name (TensorFlow's own engines for one device, many GPUs, many workers,
TPU), which process writes a run's files under it, and the graph switches a `runtime.Runtime`
chooses (Grappler passes, while-loop lowering)."""
from __future__ import annotations

import contextlib
import os

import tensorflow as tf
# The one switch TensorFlow has for it is internal; tests/test_search_task.py checks it still works.
from tensorflow.python.ops import control_flow_util_v2

from official.autodeeplab.errors import UserInputError

STRATEGIES = ('default', 'one_device', 'mirrored', 'multi_worker', 'tpu')


def get_strategy(name: str = 'default', tpu_address: str = '') -> tf.distribute.Strategy:
  """default: no distribution; one_device: first GPU or the CPU; mirrored: all local GPUs (sync
  all-reduce); multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG; tpu: TPUStrategy."""
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'one_device':
    gpus = tf.config.list_logical_devices('GPU')
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else '/cpu:0')
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise UserInputError(f'strategy={name}: expected one of {", ".join(STRATEGIES)}')


def is_chief(strategy) -> bool:
  """Whether this process writes the run's files: always, except the non-chief workers of a
  multi-worker strategy."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not getattr(resolver, 'task_type', None):
    return True
  cluster = resolver.cluster_spec().as_dict()
  if 'chief' in cluster:
    return resolver.task_type == 'chief'
  return resolver.task_type == 'worker' and resolver.task_id == 0


def worker_workdir(strategy, workdir: str) -> str:
  """`workdir` for the chief; `workdir/workers/{type}-{id}` for the other workers (their
  checkpoint saves take part in the collective but must not overwrite the chief's; the same
  directory `utils/workdir_lock.lock_dir` locks)."""
  if is_chief(strategy):
    return workdir
  resolver = strategy.cluster_resolver
  return os.path.join(workdir, 'workers', f'{resolver.task_type}-{resolver.task_id}')


_GRAPPLER_PASSES = ('layout_optimizer', 'constant_folding', 'shape_optimization', 'remapping',
                    'arithmetic_optimization', 'dependency_optimization', 'loop_optimization',
                    'function_optimization', 'debug_stripper', 'scoped_allocator_optimization',
                    'pin_to_host_optimization', 'implementation_selector', 'auto_mixed_precision')


def configure_graph_optimizer(choice: str) -> None:
  """Grappler for this process, as `runtime.Runtime.graph_optimizer` says.

  'off': the start-up time Grappler costs buys no step time for these models. 'deduplicate': its
  arithmetic optimizer alone, for the search supernet, whose loop bodies hold thousands of
  identical small constants and shape computations (one per reshape, reduction and gradient)
  that its DedupComputations stage merges; the remapper stays off, since its fused BN + ReLU turns
  NaN into 0, which would hide a diverged run. 'default': TensorFlow's.
  """
  if choice == 'off':
    tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})
  elif choice == 'deduplicate':
    options = dict.fromkeys(_GRAPPLER_PASSES, False)
    options.update(arithmetic_optimization=True, disable_meta_optimizer=False)
    tf.config.optimizer.set_experimental_options(options)
  elif choice != 'default':
    raise ValueError(f'graph optimizer {choice!r}: expected default, off or deduplicate')


@contextlib.contextmanager
def functional_while_loops(enabled: bool = True):
  """While loops (and their gradients) traced in this context stay functional `While` ops.

  TensorFlow normally lowers a tf.function's while loops to Switch/Merge/Enter/Exit and inlines
  their bodies into the caller, so the supernet's forward body, backward body and outer step are
  placed, optimised and turned into kernels as one graph at once; iterations can then overlap and
  unused loop outputs are pruned. Kept functional, each body is instantiated on its own at its first
  iteration and runs as a function call per iteration: less memory at start-up and less overhead
  per small op, which pays for small crops only (`utils/runtime.py` decides). XLA and the
  single-threaded executor keep loops functional the same way; the switch itself is internal to
  TensorFlow (tests/test_search_task.py checks that it still works).
  """
  # pylint: disable=protected-access
  previous = control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE
  control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE = enabled or previous
  try:
    yield
  finally:
    control_flow_util_v2._DISABLE_LOWER_USING_SWITCH_MERGE = previous
