"""The runtime: strategy selection by name (TensorFlow's own engines for one device, many GPUs,
many workers, TPU) and the graph switches (Grappler passes, while-loop lowering)."""
from __future__ import annotations

import contextlib

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
  raise UserInputError(f'--strategy={name}: expected one of {", ".join(STRATEGIES)}')


def disable_graph_optimizer() -> None:
  """Turns Grappler off for this process.

  Measured on 2 CPU cores: for the search (L=12, F=8, 65 px) Grappler took 22 s -> 12.7 s off the
  first call of the step and changed neither step time nor peak memory; for the retrain step
  (Auto-DeepLab-S, crop 513) it took 25 s -> 17 s off the first step, steps within 3%.
  """
  tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})


_GRAPPLER_PASSES = ('layout_optimizer', 'constant_folding', 'shape_optimization', 'remapping',
                    'arithmetic_optimization', 'dependency_optimization', 'loop_optimization',
                    'function_optimization', 'debug_stripper', 'scoped_allocator_optimization',
                    'pin_to_host_optimization', 'implementation_selector', 'auto_mixed_precision')


def deduplicating_graph_optimizer() -> None:
  """Grappler with its arithmetic optimizer alone, for the search supernet.

  The supernet's loop bodies hold thousands of identical small constants and shape computations
  (one per reshape, reduction and gradient); the arithmetic optimizer merges them (its
  DedupComputations stage), and the rest of Grappler, which costs the start-up time, stays off.
  Measured on 2 CPU cores (L=12, F=8, recompute): at 65 px peak RSS 1.89 -> 1.71 GB and the
  weight + arch step 1.44 -> 1.33 s for 2.6 s more start-up; at 321 px 2.34 -> 2.26 GB and
  13.4 -> 12.8 s. (The remapper stays off: its fused BN + ReLU turns NaN into 0, which would hide
  a diverged run.)
  """
  options = dict.fromkeys(_GRAPPLER_PASSES, False)
  options.update(arithmetic_optimization=True, disable_meta_optimizer=False)
  tf.config.optimizer.set_experimental_options(options)


@contextlib.contextmanager
def functional_while_loops(enabled: bool = True):
  """While loops (and their gradients) traced in this context stay functional `While` ops.

  TensorFlow normally lowers a tf.function's while loops to Switch/Merge/Enter/Exit and inlines
  their bodies into the caller, so the supernet's forward body, backward body and outer step are
  placed, optimised and turned into kernels as one graph at once; iterations can then overlap and
  unused loop outputs are pruned. Kept functional, each body is instantiated on its own at its first
  iteration and runs as a function call per iteration: less memory at start-up and less overhead
  per small op, which pays for small crops only (measurements in utils/cpu_runtime.py). XLA and the
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
