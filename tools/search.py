r"""Architecture search: trains the supernet bilevel, writes checkpoints, arch.npz, genotype.json.

  python -m tools.search --workdir=runs/search \
      --gin_file=experiments/search/synthetic_quickstart.gin [--gin_bindings=...] \
      [--tfrecord_dir=DIR --split=train | --num_examples=16 --image_size=96] \
      [--crop_size=65 --batch_size=2] \
      [--num_steps=N] [--strategy=default|one_device|mirrored|multi_worker|tpu]

With --tfrecord_dir the search reads shards written by tools.convert_dataset (e.g. Cityscapes
train at --half_resolution), split into fixed trainA/trainB halves; otherwise it generates the
synthetic dataset in memory. Rerunning with the same --workdir resumes from the latest checkpoint.
"""
from __future__ import annotations

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
flags.DEFINE_integer('crop_size', 65, 'Square training crop.')
flags.DEFINE_integer('batch_size', 2, 'Global batch size.')
flags.DEFINE_integer('num_steps', None, 'Weight steps (default: search_config.total_steps).')
flags.DEFINE_string('strategy', 'default', 'tf.distribute strategy.')
flags.DEFINE_integer('log_every', 10, 'Steps between log lines / TensorBoard points.')
flags.DEFINE_integer('checkpoint_every', 100, 'Steps between checkpoints.')
flags.DEFINE_integer('seed', 0, 'Data seed.')
flags.mark_flag_as_required('workdir')


def main(argv):
  del argv
  for name in ('num_classes', 'num_examples', 'image_size', 'crop_size', 'batch_size'):
    if getattr(FLAGS, name) < (2 if name in ('num_classes', 'num_examples') else 1):
      raise common.UserInputError(f'--{name}={getattr(FLAGS, name)}: must be positive '
                                  '(num_classes and num_examples at least 2)')
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.data.converters import synthetic
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import search_task  # registers the gin configurables
  common.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)

  distribute.disable_graph_optimizer()
  import keras
  keras.utils.set_random_seed(FLAGS.seed)  # deterministic initialisation of every layer
  strategy = distribute.get_strategy(FLAGS.strategy)
  config = search_task.search_config()
  num_steps = FLAGS.num_steps if FLAGS.num_steps is not None else config.total_steps
  num_classes = FLAGS.num_classes
  files = None
  if FLAGS.tfrecord_dir:
    files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
    num_classes = input_pipeline.num_classes(FLAGS.tfrecord_dir, FLAGS.split)
    train_a, train_b = (input_pipeline.from_tfrecords(files, FLAGS.batch_size, FLAGS.crop_size,
                                                      half=half, seed=FLAGS.seed + i)
                        for i, half in enumerate(('trainA', 'trainB')))
  else:
    images, labels = synthetic.arrays(FLAGS.num_examples, FLAGS.image_size, FLAGS.image_size,
                                      num_classes, FLAGS.seed)
    half_a, half_b = input_pipeline.search_halves(len(images), FLAGS.seed)
    train_a, train_b = (input_pipeline.from_arrays(images[h], labels[h], FLAGS.batch_size,
                                                   FLAGS.crop_size, seed=FLAGS.seed + i)
                        for i, h in enumerate((half_a, half_b)))
  os.makedirs(FLAGS.workdir, exist_ok=True)
  task = search_task.SearchTask(lambda: search_task.build_supernet(num_classes), config,
                                strategy)
  result = search_task.run_search(task, train_a, train_b, num_steps, FLAGS.workdir,
                                  FLAGS.log_every, FLAGS.checkpoint_every, shard_files=files)
  print(f'[search] done at step {result["step"]}; genotype written to '
        f'{os.path.join(FLAGS.workdir, "genotype.json")}:')
  print(result['genotype'].describe())


if __name__ == '__main__':
  common.run(main)
