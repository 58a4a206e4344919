r"""Retrains a genotype's network from scratch on converted TFRecords (paper sec. 5.2).

  python -m tools.train --workdir=runs/cityscapes_s \
      --gin_file=experiments/retrain/cityscapes.gin --tfrecord_dir=/data/records/cityscapes \
      [--genotype=paper|PATH.json] [--model_size=S|M|L] [--split=train] \
      [--num_steps=N --batch_size=B --crop_size=C] [--strategy=mirrored|multi_worker|tpu]

The gin file holds the protocol (`train_config.*`: steps, batch, crop, learning rate; and
`retrain_model.*`: model size, drop path); flags, when given, override it. Rerunning with the same
--workdir resumes exactly from the latest checkpoint (with a larger --num_steps, it continues;
SIGTERM checkpoints and exits with code 143); a workdir of another model is refused.
Writes `model.json` (what `tools.evaluate` and `tools.export` rebuild), `operative_config.gin`,
`checkpoints/` and `tensorboard/`; with `train_config.eval_every`, the model is scored on
--eval_split as it trains and the best weights kept in `best/` (`--checkpoint=best` for
tools.evaluate and tools.export).
"""
from __future__ import annotations

import os
import shlex

from absl import flags

from official.autodeeplab import launch
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from . import common

FLAGS = flags.FLAGS
common.define_gin_flags()
# --num_steps, --batch_size, --crop_size override train_config.total_steps / batch_size /
# crop_size.
common.define_flags('workdir', 'tfrecord_dir', 'split', 'genotype', 'model_size',
                    'filter_multiplier', 'strategy', 'tpu', 'peer_timeout_s', 'seed', 'num_steps',
                    'batch_size',
                    'crop_size', 'precision')
flags.DEFINE_string('eval_split', 'val', 'Split of --tfrecord_dir scored every '
                    'train_config.eval_every steps (the best weights kept in workdir/best/); when '
                    'the default split is absent, validation is skipped with a note.')
flags.mark_flags_as_required(['workdir', 'tfrecord_dir'])

FLAG_BINDINGS = {'num_steps': 'train_config.total_steps', 'batch_size': 'train_config.batch_size',
                 'crop_size': 'train_config.crop_size',
                 'filter_multiplier': 'retrain_model.filter_multiplier'}


def _flag_bindings() -> list[str]:
  """Flags given on the command line, as gin bindings applied after the gin files."""
  bindings = common.positive_flag_bindings(FLAGS, FLAG_BINDINGS)
  if FLAGS.model_size is not None:
    sizes.resolve_filter_multiplier(FLAGS.model_size)
    bindings.append(f'retrain_model.model_size = "{FLAGS.model_size}"')
  return bindings


def main(argv):
  del argv
  geno = genotype_lib.load(FLAGS.genotype)
  process = launch.start(
      'train', workdir=FLAGS.workdir, lock=True, strategy=FLAGS.strategy, tpu=FLAGS.tpu,
      peer_timeout_s=FLAGS.peer_timeout_s, seed=FLAGS.seed, gin_files=FLAGS.gin_file,
      precision=FLAGS.precision,
      gin_bindings=[*FLAGS.gin_bindings, *_flag_bindings()])
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.training import configs
  from official.autodeeplab.training import loop
  from official.autodeeplab.training import run_description
  from official.autodeeplab.training import train_task
  files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
  spec = input_pipeline.dataset_spec(FLAGS.tfrecord_dir, FLAGS.split)
  experiment = process.experiment.for_dataset(
      input_pipeline.split_summary(FLAGS.tfrecord_dir, FLAGS.split)['num_examples'],
      FLAGS.num_steps)
  config, data = experiment.task, experiment.data
  description = {**run_description.model_description(
      geno, configs.retrain_filter_multiplier(), spec.num_classes, spec.name, spec),
                 'precision': process.runtime.precision}
  eval_files = _validation_files(input_pipeline, experiment, spec)
  if _already_trained(description, config.total_steps):
    return
  task = train_task.TrainTask(
      experiment, lambda: configs.retrain_model(geno, spec.num_classes, runtime=process.runtime,
                                                input_channels=spec.image.channels),
      process.strategy, process.runtime)
  task.set_inputs(input_pipeline.from_tfrecords(
      files, data.batch_size, data.crop_size, seed=FLAGS.seed, min_scale=data.min_scale,
      max_scale=data.max_scale, max_side=data.max_image_side, image=spec.image), files, spec)
  if eval_files:
    task.set_validation(input_pipeline.for_evaluation(eval_files, image=spec.image),
                        FLAGS.eval_split, spec.class_names)
  print(f'[train] {spec.name} {FLAGS.split} ({len(files)} shards, {spec.num_classes} classes), '
        f'F={task.model.filter_multiplier}, {config.total_steps} steps of batch '
        f'{data.batch_size} at crop {data.crop_size} on '
        f'{process.strategy.num_replicas_in_sync} replica(s), {process.runtime.describe()}; '
        f'workdir {FLAGS.workdir}', flush=True)
  result = loop.run(task, FLAGS.workdir, config.total_steps,
                    log=lambda line: print(line, flush=True),
                    operative_config=process.operative_config())
  print(f'[train] done at step {result["step"]}; checkpoint {result["checkpoint"]}\n'
        f'  evaluate: python -m tools.evaluate --workdir={shlex.quote(FLAGS.workdir)} '
        f'--tfrecord_dir={shlex.quote(FLAGS.tfrecord_dir)} --split=val')


def _validation_files(input_pipeline, experiment, spec) -> list[str] | None:
  """The --eval_split shards when train_config.eval_every is on; checked before training."""
  if not experiment.loop.eval_every:
    return None
  try:
    files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.eval_split)
  except common.UserInputError:
    if FLAGS['eval_split'].present:
      raise
    print(f'[train] note: {FLAGS.tfrecord_dir} has no {FLAGS.eval_split!r} split: validation '
          '(train_config.eval_every) skipped', flush=True)
    return None
  eval_spec = input_pipeline.dataset_spec(FLAGS.tfrecord_dir, FLAGS.eval_split)
  if eval_spec.class_names != spec.class_names:
    raise common.UserInputError(f'--eval_split={FLAGS.eval_split}: classes {eval_spec.class_names}'
                                f', the training split has {spec.class_names}')
  return files


def _already_trained(description: dict, total_steps: int) -> bool:
  """True (after saying so) when the workdir holds a run of this very model (model.json) that
  reached total_steps. Anything else goes the normal way, where a checkpoint of another model is
  refused naming the first mismatched variable."""
  import tensorflow as tf
  from official.autodeeplab.training import checkpoints
  from official.autodeeplab.training import run_description
  state = tf.train.get_checkpoint_state(os.path.join(FLAGS.workdir, checkpoints.CHECKPOINT_DIR))
  if state is None:
    return False
  try:
    run_description.check_or_write_model(FLAGS.workdir, description, write=False)
  except common.UserInputError:
    return False
  step = int(state.model_checkpoint_path.rsplit('-', 1)[-1])
  if step < total_steps:
    return False
  print(f'[train] {FLAGS.workdir} is already trained to step {step}/{total_steps}: nothing to do')
  return True


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
