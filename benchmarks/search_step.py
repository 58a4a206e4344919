r"""Search supernet benchmark: start-up, step times and peak memory, as one JSON line.

  python benchmarks/search_step.py --num_layers=12 --filter_multiplier=8 --crop_size=65 \
      --batch_size=2 [--steps=5] [--recompute] [--arch_only_gradients] [--grappler] \
      [--precision=bfloat16]

oneDNN, the CPU allocator, threads per op and the loop form follow the crop size as in tools.search
(utils/runtime.py; TF_ENABLE_ONEDNN_OPTS / TF_CPU_ALLOCATOR_USE_BFC / TF_NUM_INTRAOP_THREADS
override). first_step_s counts from process start (before importing TensorFlow) to the end of
the first weight step + architecture step; weight_step_s / arch_step_s are medians of the
following steps.
"""
import time

_START = time.time()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer('num_layers', 12, 'L.')
flags.DEFINE_integer('filter_multiplier', 8, 'F.')
flags.DEFINE_integer('crop_size', 65, 'Square crop size.')
flags.DEFINE_integer('batch_size', 2, 'Batch size.')
flags.DEFINE_integer('num_classes', 19, 'Classes.')
flags.DEFINE_integer('steps', 5, 'Timed (weight + arch) steps after the first.')
flags.DEFINE_bool('recompute', False, 'Recompute layer activations in the backward pass.')
flags.DEFINE_bool('arch_only_gradients', False, 'Architecture steps in their own graph without '
                  'weight gradients (search_config.arch_only_gradients).')
flags.DEFINE_bool('grappler', False, 'Keep all of TensorFlow\'s graph optimiser on (default: '
                  'its arithmetic optimizer alone, as tools.search runs).')
flags.DEFINE_enum('precision', 'float32', ['float32', 'bfloat16', 'float16'], 'Precision.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from official.autodeeplab.utils import runtime as runtime_lib
  runtime = runtime_lib.resolve('search', FLAGS.crop_size, runtime_lib.probe_device(),
                                precision=FLAGS.precision)  # as tools.search, before TF
  runtime.apply()
  import numpy as np
  import tensorflow as tf
  from official.autodeeplab.modeling import precision
  from official.autodeeplab.modeling import supernet
  from official.autodeeplab.training import experiment
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import search_task

  if not FLAGS.grappler:
    distribute.configure_graph_optimizer(runtime.graph_optimizer)  # as tools.search runs
  precision.set_policy(runtime)
  rng = np.random.default_rng(0)
  shape = [FLAGS.batch_size, FLAGS.crop_size, FLAGS.crop_size]
  images = tf.constant(rng.standard_normal(shape + [3]), tf.float32)
  labels = tf.constant(rng.integers(0, FLAGS.num_classes, shape), tf.int32)
  task = search_task.SearchTask(
      experiment.Experiment.search(experiment.SearchConfig(
          arch_only_gradients=FLAGS.arch_only_gradients)),
      lambda: supernet.Supernet(
          FLAGS.num_classes, num_layers=FLAGS.num_layers,
          filter_multiplier=FLAGS.filter_multiplier, recompute=FLAGS.recompute,
          float32_batch_norm=runtime.float32_batch_norm), runtime=runtime)
  t = time.time()
  task._gradients.get_concrete_function(images, labels)
  trace_s = time.time() - t
  task.weight_step(images, labels)
  task.arch_step(images, labels)
  first_step_s = time.time() - _START
  weight, arch = [], []
  for _ in range(FLAGS.steps):
    t = time.time()
    task.weight_step(images, labels)
    weight.append(time.time() - t)
    t = time.time()
    task.arch_step(images, labels)
    arch.append(time.time() - t)
  print(json.dumps({
      'num_layers': FLAGS.num_layers, 'filter_multiplier': FLAGS.filter_multiplier,
      'crop_size': FLAGS.crop_size, 'batch_size': FLAGS.batch_size,
      'recompute': FLAGS.recompute, 'arch_only_gradients': FLAGS.arch_only_gradients,
      'grappler': FLAGS.grappler, 'precision': FLAGS.precision, 'device': runtime.device,
      'onednn': runtime.onednn, 'pooled_allocator': runtime.pooled_allocator,
      'functional_loops': runtime.functional_loops,
      'threads_per_op': runtime.threads_per_op or 'cores',
      'trace_s': round(trace_s, 2), 'first_step_s': round(first_step_s, 2),
      'weight_step_s': round(statistics.median(weight), 3),
      'arch_step_s': round(statistics.median(arch), 3),
      'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
      'params': int(sum(np.prod(v.shape) for v in task.model.weight_variables)),
      'arch_params': int(sum(np.prod(v.shape) for v in task.model.arch_variables)),
      'cpu_count': os.cpu_count(),
      **({'peak_device_gb': round(tf.config.experimental.get_memory_info('GPU:0')['peak'] / 2**30,
                                  3)} if runtime.device == 'gpu' else {}),
  }))


if __name__ == '__main__':
  app.run(main)
