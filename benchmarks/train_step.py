r"""Retrain benchmark: start-up, the real train step of `train_task`, inference, memory; one JSON line.

  python benchmarks/train_step.py --model_size=S --crop_size=513 --batch_size=2 --steps=3 \
      [--infer_size=1024,2048] [--grappler] [--precision=bfloat16] [--jit_compile]

Auto-DeepLab-S/M/L with the paper's genotype and 19 classes, random images and labels (as the
PyTorch yardstick `../shared/peer/run.sh train` does). first_step_s counts from process start
(before importing TensorFlow) to the end of the first train step; train_step_s is the median of the
following steps; infer_s the second full-resolution inference (the first traces). The step's
FLOP (2 x multiply-adds x 3 for forward + backward, exact conv count) over its time is compared
with what a plain 3x3 convolution with 100 channels reaches on this machine (`conv_gflops`).
"""
import time

_START = time.time()

import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string('model_size', 'S', 'S, M or L.')
flags.DEFINE_integer('crop_size', 513, 'Square training crop.')
flags.DEFINE_integer('batch_size', 2, 'Batch size.')
flags.DEFINE_integer('num_classes', 19, 'Classes.')
flags.DEFINE_integer('steps', 3, 'Timed steps after the first.')
flags.DEFINE_string('infer_size', '1024,2048', 'HEIGHT,WIDTH of the inference image ("" skips).')
flags.DEFINE_bool('grappler', False, 'Keep TensorFlow\'s graph optimiser on.')
flags.DEFINE_bool('conv_rate', True, 'Measure the machine\'s 3x3-conv GFLOP/s for reference.')
flags.DEFINE_enum('precision', 'float32', ['float32', 'bfloat16', 'float16'], 'Precision.')
flags.DEFINE_bool('jit_compile', False, 'train_config.jit_compile (XLA).')
FLAGS = flags.FLAGS


def conv_gflops() -> float:
  """GFLOP/s of a 3x3 convolution, 100 -> 100 channels, on a [2, 256, 256, 100] input."""
  import tensorflow as tf
  x = tf.random.normal([2, 256, 256, 100])
  kernel = tf.random.normal([3, 3, 100, 100])
  conv = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, 'SAME'))
  conv(x).numpy()
  times = []
  for _ in range(3):
    t = time.time()
    conv(x).numpy()
    times.append(time.time() - t)
  return 2 * 9 * 100 * 100 * 256 * 256 * 2 / min(times) / 1e9


def main(argv):
  del argv
  from official.autodeeplab.utils import runtime as runtime_lib
  runtime = runtime_lib.resolve('train', device=runtime_lib.probe_device(),
                                precision=FLAGS.precision)
  runtime.apply()
  import numpy as np
  import tensorflow as tf
  from official.autodeeplab.modeling import precision
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.training import configs
  from official.autodeeplab.training import experiment
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import train_task
  from official.autodeeplab.utils import complexity

  if not FLAGS.grappler:
    distribute.configure_graph_optimizer('off')
  rng = np.random.default_rng(0)
  shape = [FLAGS.batch_size, FLAGS.crop_size, FLAGS.crop_size]
  images = tf.constant(rng.uniform(-1, 1, shape + [3]), tf.float32)
  labels = tf.constant(rng.integers(0, FLAGS.num_classes, shape), tf.int32)
  precision.set_policy(runtime)
  config = experiment.TrainConfig(total_steps=1000, batch_size=FLAGS.batch_size,
                                  crop_size=FLAGS.crop_size, jit_compile=FLAGS.jit_compile)
  task = train_task.TrainTask(experiment.Experiment.train(config), lambda: configs.retrain_model(
      PAPER_GENOTYPE, FLAGS.num_classes, FLAGS.model_size, drop_path_keep_prob=0.7,
      runtime=runtime), runtime=runtime)
  built_s = time.time() - _START
  float(task.train_batch(images, labels)[0])
  first_step_s = time.time() - _START
  steps = []
  for _ in range(FLAGS.steps):
    t = time.time()
    float(task.train_batch(images, labels)[0])
    steps.append(time.time() - t)
  train_step_s = statistics.median(steps)
  report = {
      'model_size': FLAGS.model_size, 'filter_multiplier': task.model.filter_multiplier,
      'crop_size': FLAGS.crop_size, 'batch_size': FLAGS.batch_size, 'grappler': FLAGS.grappler,
      'precision': FLAGS.precision, 'jit_compile': FLAGS.jit_compile, 'device': runtime.device,
      'params': complexity.count_parameters(task.model),
      'built_s': round(built_s, 2), 'first_step_s': round(first_step_s, 2),
      'train_step_s': round(train_step_s, 3),
      'images_per_s': round(FLAGS.batch_size / train_step_s, 3),
  }
  madds = complexity.multiply_adds(task.model, FLAGS.crop_size, FLAGS.crop_size)['total']
  step_gflop = 2 * madds * 3 * FLAGS.batch_size / 1e9
  report['step_gflop'] = round(step_gflop, 1)
  report['step_gflops_per_s'] = round(step_gflop / train_step_s, 1)
  if FLAGS.infer_size:
    height, width = (int(v) for v in FLAGS.infer_size.split(','))
    infer = tf.function(lambda x: task.model(x, training=False))
    image = tf.random.uniform([1, height, width, 3], -1, 1)
    infer(image).numpy()
    t = time.time()
    infer(image).numpy()
    report.update(infer_size=FLAGS.infer_size, infer_s=round(time.time() - t, 3))
  report['peak_rss_gb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
  if runtime.device == 'gpu':
    report['peak_device_gb'] = round(
        tf.config.experimental.get_memory_info('GPU:0')['peak'] / 2**30, 3)
  if FLAGS.conv_rate:
    rate = conv_gflops()
    report['conv_gflops'] = round(rate, 1)
    report['fraction_of_conv_rate'] = round(report['step_gflops_per_s'] / rate, 3)
  report.update(cpu_count=os.cpu_count(), machine=platform.processor() or platform.machine())
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
