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
memory. Rerunning with the same --workdir resumes from the latest checkpoint (with a larger
--num_steps, it continues); SIGTERM checkpoints and exits with code 143; a workdir of another
supernet is refused.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from official.autodeeplab import launch
from . import common

FLAGS = flags.FLAGS
common.define_gin_flags()
# Without --tfrecord_dir the search generates the synthetic dataset (--num_examples,
# --image_size, --num_classes); --crop_size, --batch_size override search_data.*; --num_steps sets
# search_config.total_steps (the cosine schedule's length too, as in tools.train; the warm-up,
# search_config.arch_start_step, stays as the gin file says).
common.define_flags('workdir', 'tfrecord_dir', 'split', 'strategy', 'tpu', 'peer_timeout_s',
                    'seed', 'num_classes', 'num_examples', 'image_size', 'crop_size',
                    'batch_size', 'num_steps', 'precision')
flags.DEFINE_integer('log_every', None, 'Steps between log lines (loop_settings.log_every).')
flags.DEFINE_integer('checkpoint_every', None, 'Steps between checkpoints.')
flags.DEFINE_integer('export_every', None, 'Steps between genotype/plot/TensorBoard exports.')
flags.mark_flag_as_required('workdir')

FLAG_BINDINGS = {'crop_size': 'search_data.crop_size', 'batch_size': 'search_data.batch_size',
                 'num_steps': 'search_config.total_steps',
                 'log_every': 'loop_settings.log_every',
                 'checkpoint_every': 'loop_settings.checkpoint_every',
                 'export_every': 'loop_settings.export_every'}


def main(argv):
  del argv
  for name in ('num_classes', 'num_examples', 'image_size'):
    if getattr(FLAGS, name) < 2:
      raise common.UserInputError(f'--{name}={getattr(FLAGS, name)}: must be at least 2')
  process = launch.start(
      'search', workdir=FLAGS.workdir, lock=True, strategy=FLAGS.strategy, tpu=FLAGS.tpu,
      peer_timeout_s=FLAGS.peer_timeout_s, seed=FLAGS.seed, gin_files=FLAGS.gin_file,
      precision=FLAGS.precision,
      gin_bindings=[*FLAGS.gin_bindings, *common.positive_flag_bindings(FLAGS, FLAG_BINDINGS)])
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.data.converters import synthetic
  from official.autodeeplab.training import configs
  from official.autodeeplab.training import loop
  from official.autodeeplab.training import search_task
  num_classes, files, examples, image = FLAGS.num_classes, None, None, None
  if FLAGS.tfrecord_dir:
    files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
    num_classes = input_pipeline.num_classes(FLAGS.tfrecord_dir, FLAGS.split)
    image = input_pipeline.dataset_spec(FLAGS.tfrecord_dir, FLAGS.split).image
    num_examples = input_pipeline.split_summary(FLAGS.tfrecord_dir, FLAGS.split)['num_examples']
  else:
    images, labels = synthetic.arrays(FLAGS.num_examples, FLAGS.image_size, FLAGS.image_size,
                                      num_classes, FLAGS.seed)
    examples = (images, labels, [synthetic.example_name(i, FLAGS.seed)
                                 for i in range(len(images))])
    num_examples = FLAGS.num_examples
  experiment = process.experiment.for_dataset(num_examples, FLAGS.num_steps)
  from official.autodeeplab.training import search_outputs
  experiment = dataclasses.replace(experiment, task=search_outputs.workdir_latency_table(
      experiment.task, FLAGS.workdir))
  config, data = experiment.task, experiment.data
  channels = 3 if image is None else image.channels
  task = search_task.SearchTask(
      experiment, lambda: configs.build_supernet(num_classes, runtime=process.runtime,
                                                 input_channels=channels),
      process.strategy, process.runtime)
  task.build_inputs(files, examples, FLAGS.seed, image)
  model = task.model
  print(f'[search] L={model.num_layers} B={model.num_blocks} F={model.filter_multiplier}, '
        f'{num_classes} classes, {config.total_steps} steps (arch from {config.arch_start_step}) '
        f'of batch {data.batch_size} at crop {data.crop_size}, trainA/trainB '
        f'{task.half_sizes[0]}/{task.half_sizes[1]} images, on '
        f'{process.strategy.num_replicas_in_sync} replica(s), {process.runtime.describe()}; '
        f'workdir {FLAGS.workdir}', flush=True)
  if config.latency_table:
    from official.autodeeplab.search import latency_table
    print(f'[search] cost term: expected latency from {config.latency_table} '
          f'({latency_table.describe_setting(task.cost_model.setting)}), target '
          f'{config.cost_target:g} ms, weight {config.cost_weight:g}', flush=True)
  if task.arch_steps_until(config.total_steps) == 0:
    print(f'[search] WARNING: this run ends at step {config.total_steps}, before its '
          f'architecture steps start (after step {config.arch_start_step}, '
          'search_config.arch_start_step): the genotype it writes will be decoded from the '
          'initial alpha and beta, not searched. Run more steps or lower '
          'search_config.arch_start_step.', flush=True)
  result = loop.run(task, FLAGS.workdir, config.total_steps,
                    log=lambda line: print(line, flush=True),
                    operative_config=process.operative_config())
  if result['genotype'] is not None:  # the chief's
    print(f'[search] done at step {result["step"]}'
          f'{" (stopped early: " + result["stopped"] + ")" if result.get("stopped") else ""}; '
          f'genotype written to {os.path.join(FLAGS.workdir, "genotype.json")}:')
    print(result['genotype'].describe())
    if task.arch_steps_until(result['step']) == 0:
      print(f'[search] WARNING: no architecture step ran (they start after step '
            f'{config.arch_start_step}): {os.path.join(FLAGS.workdir, "genotype.json")} is '
            'decoded from the initial alpha and beta, NOT a searched architecture.', flush=True)


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
