r"""Architecture search: trains the supernet bilevel, writes checkpoints, arch.npz, genotype.json.

  python -m tools.search --workdir=runs/search \
      --gin_file=experiments/search/synthetic_quickstart.gin [--gin_bindings=...] \
      [--dataset=synthetic --num_examples=16 --image_size=96] [--crop_size=65 --batch_size=2] \
      [--num_steps=N] [--strategy=default|one_device|mirrored|multi_worker|tpu]

Rerunning with the same --workdir resumes from the latest checkpoint.
"""
from __future__ import annotations

import os

from absl import flags

from tools import common

FLAGS = flags.FLAGS
common.define_gin_flags()
flags.DEFINE_string('workdir', None, 'Output directory (checkpoints, TensorBoard, genotype).')
flags.DEFINE_enum('dataset', 'synthetic', ['synthetic'], 'Training data.')
flags.DEFINE_integer('num_classes', 5, 'Classes of the synthetic dataset.')
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

  search_task.disable_graph_optimizer()
  import keras
  keras.utils.set_random_seed(FLAGS.seed)  # deterministic initialisation of every layer
  strategy = distribute.get_strategy(FLAGS.strategy)
  config = search_task.search_config()
  num_steps = FLAGS.num_steps if FLAGS.num_steps is not None else config.total_steps
  images, labels = synthetic.arrays(FLAGS.num_examples, FLAGS.image_size, FLAGS.image_size,
                                    FLAGS.num_classes, FLAGS.seed)
  half_a, half_b = input_pipeline.search_halves(len(images), FLAGS.seed)
  train_a, train_b = (input_pipeline.from_arrays(images[h], labels[h], FLAGS.batch_size,
                                                 FLAGS.crop_size, seed=FLAGS.seed + i)
                      for i, h in enumerate((half_a, half_b)))
  os.makedirs(FLAGS.workdir, exist_ok=True)
  task = search_task.SearchTask(lambda: search_task.build_supernet(FLAGS.num_classes), config,
                                strategy)
  result = search_task.run_search(task, train_a, train_b, num_steps, FLAGS.workdir,
                                  FLAGS.log_every, FLAGS.checkpoint_every)
  print(f'[search] done at step {result["step"]}; genotype written to '
        f'{os.path.join(FLAGS.workdir, "genotype.json")}:')
  print(result['genotype'].describe())


if __name__ == '__main__':
  common.run(main)
