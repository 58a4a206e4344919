r"""Architecture search: trains the supernet bilevel, writes checkpoints, arch.npz, genotype.json.

  python -m tools.search --gin_file=experiments/search/cityscapes.gin \
      --tfrecord_dir=/data/records/cityscapes_half --workdir=runs/search_cityscapes
  python -m tools.search --workdir=runs/search \
      --gin_file=experiments/search/synthetic_quickstart.gin [--gin_bindings=...] \
      [--tfrecord_dir=DIR --split=train | --num_examples=16 --image_size=96] \
      [--crop_size=N --batch_size=N --num_steps=N] [--strategy=mirrored|multi_worker|tpu]

The gin file holds the protocol (`search_config.*`: steps, warm-up, optimisers; `search_data.*`:
crop, batch, scale jitter; `build_supernet.*`; `loop_settings.*`); flags, when given, override it,
and the operative config is written to the workdir. With --tfrecord_dir the search reads shards
written by tools.convert_dataset (e.g. Cityscapes train at --half_resolution), split into trainA /
trainB halves of exactly half the images each; otherwise it generates the synthetic dataset in
memory. Rerunning with the same --workdir resumes from the latest checkpoint; SIGTERM checkpoints
and exits with code 143; a workdir of another supernet is refused.
"""
from __future__ import annotations

import math
import os

from absl import flags

from tools import common

FLAGS = flags.FLAGS
common.define_gin_flags()
flags.DEFINE_string('workdir', None, 'Output directory (checkpoints, TensorBoard, genotype).')
flags.DEFINE_string('tfrecord_dir', None, 'Converted dataset (tools.convert_dataset output).')
flags.DEFINE_string('split', 'train', 'Split of --tfrecord_dir to search on.')
flags.DEFINE_integer('num_classes', 5, 'Classes of the synthetic dataset (with --tfrecord_dir: '
                     'read from {split}-summary.json).')
flags.DEFINE_integer('num_examples', 16, 'Images in the synthetic dataset (split in trainA/B).')
flags.DEFINE_integer('image_size', 96, 'Side of the synthetic images.')
flags.DEFINE_integer('crop_size', None, 'Square training crop; overrides search_data.crop_size.')
flags.DEFINE_integer('batch_size', None, 'Global batch; overrides search_data.batch_size.')
flags.DEFINE_integer('num_steps', None, 'Weight steps (default: search_config.total_steps).')
flags.DEFINE_string('strategy', 'default', 'tf.distribute strategy.')
flags.DEFINE_string('tpu', '', 'TPU address for --strategy=tpu.')
flags.DEFINE_integer('log_every', None, 'Steps between log lines (loop_settings.log_every).')
flags.DEFINE_integer('checkpoint_every', None, 'Steps between checkpoints.')
flags.DEFINE_integer('export_every', None, 'Steps between genotype/plot/TensorBoard exports.')
flags.DEFINE_integer('seed', 0, 'Data seed.')
flags.mark_flag_as_required('workdir')

FLAG_BINDINGS = {'crop_size': 'search_data.crop_size', 'batch_size': 'search_data.batch_size',
                 'log_every': 'loop_settings.log_every',
                 'checkpoint_every': 'loop_settings.checkpoint_every',
                 'export_every': 'loop_settings.export_every'}


def main(argv):
  del argv
  for name in ('num_classes', 'num_examples', 'image_size'):
    if getattr(FLAGS, name) < 2:
      raise common.UserInputError(f'--{name}={getattr(FLAGS, name)}: must be at least 2')
  if FLAGS.num_steps is not None and FLAGS.num_steps < 1:
    raise common.UserInputError(f'--num_steps={FLAGS.num_steps}: must be positive')
  bindings = common.positive_flag_bindings(FLAGS, FLAG_BINDINGS)
  # Before TensorFlow is imported: kernels, allocator and threads per op (utils/cpu_runtime.py).
  from official.autodeeplab.training import search_settings
  from official.autodeeplab.utils import cpu_runtime
  cpu_runtime.configure_for_crop(search_settings.configured_crop_size(
      FLAGS.gin_file, list(FLAGS.gin_bindings) + bindings))
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.data.converters import synthetic
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import search_task  # registers the gin configurables
  common.parse_gin(FLAGS.gin_file, list(FLAGS.gin_bindings) + bindings)
  config, data, settings = (search_settings.search_config(), search_settings.search_data(),
                            search_settings.loop_settings())
  if data.crop_size < 1 or data.batch_size < 1 or not 0 < data.min_scale <= data.max_scale:
    raise common.UserInputError(f'search_data: {data}: crop and batch must be positive, '
                                '0 < min_scale <= max_scale')

  distribute.deduplicating_graph_optimizer()
  import gin
  import keras
  keras.utils.set_random_seed(FLAGS.seed)  # deterministic initialisation of every layer
  strategy = distribute.get_strategy(FLAGS.strategy, FLAGS.tpu)
  num_steps = FLAGS.num_steps if FLAGS.num_steps is not None else config.total_steps
  num_classes = FLAGS.num_classes
  files = None
  scale = {'min_scale': data.min_scale, 'max_scale': data.max_scale}
  if FLAGS.tfrecord_dir:
    files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
    num_classes = input_pipeline.num_classes(FLAGS.tfrecord_dir, FLAGS.split)
    halves = input_pipeline.split_in_halves(input_pipeline.example_names(files))
    if len(halves) < 2:
      raise common.UserInputError(f'{FLAGS.tfrecord_dir}: split {FLAGS.split!r} needs at least '
                                  '2 images (one for trainA, one for trainB)')
    half_sizes = (len(halves) // 2, len(halves) - len(halves) // 2)
    train_a, train_b = (input_pipeline.from_tfrecords(
        files, data.batch_size, data.crop_size, half=half, seed=FLAGS.seed + i, halves=halves,
        **scale) for i, half in enumerate(('trainA', 'trainB')))
  else:
    images, labels = synthetic.arrays(FLAGS.num_examples, FLAGS.image_size, FLAGS.image_size,
                                      num_classes, FLAGS.seed)
    half_a, half_b = input_pipeline.search_halves(len(images), FLAGS.seed)
    half_sizes = (len(half_a), len(half_b))
    train_a, train_b = (input_pipeline.from_arrays(images[h], labels[h], data.batch_size,
                                                   data.crop_size, seed=FLAGS.seed + i, **scale)
                        for i, h in enumerate((half_a, half_b)))
  task = search_task.SearchTask(lambda: search_task.build_supernet(num_classes), config,
                                strategy)
  model = task.model
  description = {'num_classes': num_classes, 'num_layers': model.num_layers,
                 'num_blocks': model.num_blocks, 'filter_multiplier': model.filter_multiplier}
  print(f'[search] L={model.num_layers} B={model.num_blocks} F={model.filter_multiplier}, '
        f'{num_classes} classes, {num_steps} steps (arch from {config.arch_start_step}) of batch '
        f'{data.batch_size} at crop {data.crop_size}, trainA/trainB '
        f'{half_sizes[0]}/{half_sizes[1]} images, on {strategy.num_replicas_in_sync} replica(s) '
        f'({cpu_runtime.describe()}); workdir {FLAGS.workdir}',
        flush=True)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  result = search_task.run_search(
      task, train_a, train_b, num_steps, FLAGS.workdir, settings,
      log=lambda line: print(line, flush=True), shard_files=files,
      images_per_step=data.batch_size * (2 if config.arch_start_step < num_steps else 1),
      steps_per_epoch=math.ceil(half_sizes[0] / data.batch_size), description=description,
      operative_config=gin.operative_config_str())
  if result['genotype'] is not None:  # the chief's
    print(f'[search] done at step {result["step"]}; genotype written to '
          f'{os.path.join(FLAGS.workdir, "genotype.json")}:')
    print(result['genotype'].describe())


if __name__ == '__main__':
  common.run(main)
