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

import dataclasses
import os

from absl import flags

from tools import common

FLAGS = flags.FLAGS
common.define_gin_flags()
# Without --tfrecord_dir the search generates the synthetic dataset (--num_examples,
# --image_size, --num_classes); --crop_size, --batch_size override search_data.*; --num_steps sets
# search_config.total_steps (the cosine schedule's length too, as in tools.train; the warm-up,
# search_config.arch_start_step, stays as the gin file says).
common.define_flags('workdir', 'tfrecord_dir', 'split', 'strategy', 'tpu', 'seed', 'num_classes',
                    'num_examples', 'image_size', 'crop_size', 'batch_size', 'num_steps',
                    'precision')
flags.DEFINE_integer('log_every', None, 'Steps between log lines (loop_settings.log_every).')
flags.DEFINE_integer('checkpoint_every', None, 'Steps between checkpoints.')
flags.DEFINE_integer('export_every', None, 'Steps between genotype/plot/TensorBoard exports.')
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
  from official.autodeeplab.utils import workdir_lock
  workdir_lock.lock(FLAGS.workdir, FLAGS.strategy)  # one writer per workdir, before any work
  # gin once, before TensorFlow: the crop decides CPU settings fixed at its import.
  from official.autodeeplab.training import configs
  from official.autodeeplab.utils import runtime as runtime_lib
  common.parse_gin(FLAGS.gin_file,
                   list(FLAGS.gin_bindings) + common.positive_flag_bindings(FLAGS, FLAG_BINDINGS)
                   + common.precision_bindings(FLAGS))
  config, data, settings = configs.search_config(), configs.search_data(), configs.loop_settings()
  config.validate()
  device = runtime_lib.probe_device(FLAGS.strategy)
  runtime = runtime_lib.resolve('search', data.crop_size, device,
                                precision=common.precision_of(FLAGS, configs, device))
  runtime.apply()
  import gin
  import keras
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.data.converters import synthetic
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import loop
  from official.autodeeplab.training import search_task
  distribute.configure_graph_optimizer(runtime.graph_optimizer)
  common.set_precision(runtime)
  keras.utils.set_random_seed(FLAGS.seed)  # deterministic initialisation of every layer
  strategy = distribute.get_strategy(FLAGS.strategy, FLAGS.tpu)
  num_classes, files, examples = FLAGS.num_classes, None, None
  num_examples = FLAGS.num_examples
  if FLAGS.tfrecord_dir:
    files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
    num_classes = input_pipeline.num_classes(FLAGS.tfrecord_dir, FLAGS.split)
    num_examples = input_pipeline.split_summary(FLAGS.tfrecord_dir, FLAGS.split)['num_examples']
  else:
    images, labels = synthetic.arrays(FLAGS.num_examples, FLAGS.image_size, FLAGS.image_size,
                                      num_classes, FLAGS.seed)
    examples = (images, labels, [synthetic.example_name(i, FLAGS.seed)
                                 for i in range(len(images))])
  config = configs.with_epochs(config, num_examples // 2, data.batch_size)  # trainA: half
  if FLAGS.num_steps is not None:  # wins over search_config.total_steps and num_epochs alike
    config = dataclasses.replace(config, total_steps=FLAGS.num_steps)
  num_steps = config.total_steps
  task = search_task.SearchTask(lambda: configs.build_supernet(num_classes), config, strategy,
                                runtime, settings)
  task.build_inputs(data, files, examples, FLAGS.seed)
  model = task.model
  print(f'[search] L={model.num_layers} B={model.num_blocks} F={model.filter_multiplier}, '
        f'{num_classes} classes, {num_steps} steps (arch from {config.arch_start_step}) of batch '
        f'{data.batch_size} at crop {data.crop_size}, trainA/trainB '
        f'{task.half_sizes[0]}/{task.half_sizes[1]} images, on '
        f'{strategy.num_replicas_in_sync} replica(s), {runtime.describe()}; workdir '
        f'{FLAGS.workdir}', flush=True)
  unsearched = task.arch_steps_until(num_steps) == 0
  if unsearched:
    print(f'[search] WARNING: this run ends at step {num_steps}, before its architecture steps '
          f'start (after step {config.arch_start_step}, search_config.arch_start_step): the '
          'genotype it writes will be decoded from the initial alpha and beta, not searched. '
          'Run more steps or lower search_config.arch_start_step.', flush=True)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  result = loop.run(task, FLAGS.workdir, num_steps, log=lambda line: print(line, flush=True),
                    operative_config=gin.operative_config_str())
  if result['genotype'] is not None:  # the chief's
    print(f'[search] done at step {result["step"]}'
          f'{" (stopped early: " + result["stopped"] + ")" if result.get("stopped") else ""}; '
          f'genotype written to {os.path.join(FLAGS.workdir, "genotype.json")}:')
    print(result['genotype'].describe())
    if task.arch_steps_until(result['step']) == 0:
      print(f'[search] WARNING: no architecture step ran (they start after step '
            f'{config.arch_start_step}): {os.path.join(FLAGS.workdir, "genotype.json")} is '
            'decoded from the initial alpha and beta, NOT a searched architecture.', flush=True)


if __name__ == '__main__':
  common.run(main)
