r"""Retrains a genotype's network from scratch on converted TFRecords (paper sec. 5.2).

  python -m tools.train --workdir=runs/cityscapes_s \
      --gin_file=experiments/retrain/cityscapes_s.gin --tfrecord_dir=/data/records/cityscapes \
      [--genotype=paper|PATH.json] [--model_size=S|M|L] [--split=train] \
      [--num_steps=N --batch_size=B --crop_size=C] [--strategy=mirrored|multi_worker|tpu]

The gin file holds the protocol (`train_config.*`: steps, batch, crop, learning rate; and
`retrain_model.*`: model size, drop path); flags, when given, override it. Rerunning with the same
--workdir resumes exactly from the latest checkpoint (SIGTERM checkpoints and exits with code 143);
a workdir of another model is refused.
Writes `model.json` (what `tools.evaluate` and `tools.export` rebuild), `operative_config.gin`,
`checkpoints/` and `tensorboard/`.
"""
from __future__ import annotations

import os

from absl import flags

from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from tools import common

FLAGS = flags.FLAGS
common.define_gin_flags()
flags.DEFINE_string('workdir', None, 'Output directory (checkpoints, TensorBoard, model.json).')
flags.DEFINE_string('tfrecord_dir', None, 'Converted dataset (tools.convert_dataset output).')
flags.DEFINE_string('split', 'train', 'Split of --tfrecord_dir to train on.')
flags.DEFINE_string('genotype', 'paper', '"paper" or a genotype JSON file (tools.search output).')
flags.DEFINE_string('model_size', None, 'S, M or L (F = 20/32/48); overrides the gin file.')
flags.DEFINE_integer('filter_multiplier', None, 'F; overrides --model_size and the gin file.')
flags.DEFINE_integer('num_steps', None, 'Training steps; overrides train_config.total_steps.')
flags.DEFINE_integer('batch_size', None, 'Global batch size; overrides train_config.batch_size.')
flags.DEFINE_integer('crop_size', None, 'Training crop; overrides train_config.crop_size.')
flags.DEFINE_string('strategy', 'default', 'tf.distribute strategy: default, one_device, '
                    'mirrored, multi_worker, tpu.')
flags.DEFINE_string('tpu', '', 'TPU address for --strategy=tpu.')
flags.DEFINE_integer('seed', 0, 'Initialisation and data seed.')
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
  bindings = _flag_bindings()
  from official.autodeeplab.data import input_pipeline
  files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
  spec = input_pipeline.dataset_spec(FLAGS.tfrecord_dir, FLAGS.split)
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import evaluation  # noqa: F401 (gin files bind it too)
  from official.autodeeplab.training import run_state
  from official.autodeeplab.training import train_task  # registers the gin configurables
  common.parse_gin(FLAGS.gin_file, list(FLAGS.gin_bindings) + bindings)
  config = train_task.train_config()
  config.validate()
  if _already_trained(run_state, geno, spec, config.total_steps):
    return
  distribute.disable_graph_optimizer()
  import gin
  import keras
  keras.utils.set_random_seed(FLAGS.seed)  # deterministic initialisation of every layer
  strategy = distribute.get_strategy(FLAGS.strategy, FLAGS.tpu)
  task = train_task.TrainTask(lambda: train_task.retrain_model(geno, spec.num_classes), config,
                              strategy)
  model = task.model
  description = run_state.model_description(geno, model.filter_multiplier, spec.num_classes,
                                            spec.name)
  dataset = input_pipeline.from_tfrecords(files, config.batch_size, config.crop_size,
                                          seed=FLAGS.seed, min_scale=config.min_scale,
                                          max_scale=config.max_scale,
                                          max_side=config.max_image_side)
  print(f'[train] {spec.name} {FLAGS.split} ({len(files)} shards, {spec.num_classes} classes), '
        f'F={model.filter_multiplier}, {config.total_steps} steps of batch {config.batch_size} '
        f'at crop {config.crop_size} on {strategy.num_replicas_in_sync} replica(s); '
        f'workdir {FLAGS.workdir}', flush=True)
  result = train_task.run_training(
      task, dataset, FLAGS.workdir, description, spec.palette, shard_files=files,
      log=lambda line: print(line, flush=True), operative_config=gin.operative_config_str())
  print(f'[train] done at step {result["step"]}; checkpoint {result["checkpoint"]}\n'
        f'  evaluate: python -m tools.evaluate --workdir={FLAGS.workdir} '
        f'--tfrecord_dir={FLAGS.tfrecord_dir} --split=val')


def _already_trained(run_state, geno, spec, total_steps: int) -> bool:
  """True (after saying so) when the workdir holds a run of this very model (model.json) that
  reached total_steps. Anything else goes the normal way, where a checkpoint of another model is
  refused naming the first mismatched variable."""
  import tensorflow as tf
  state = tf.train.get_checkpoint_state(os.path.join(FLAGS.workdir, run_state.CHECKPOINT_DIR))
  if state is None:
    return False
  multiplier = sizes.resolve_filter_multiplier(_gin_value('retrain_model.model_size', 'S'),
                                               _gin_value('retrain_model.filter_multiplier'))
  try:
    run_state.check_or_write_model(FLAGS.workdir, run_state.model_description(
        geno, multiplier, spec.num_classes, spec.name), write=False)
  except common.UserInputError:
    return False
  step = int(state.model_checkpoint_path.rsplit('-', 1)[-1])
  if step < total_steps:
    return False
  print(f'[train] {FLAGS.workdir} is already trained to step {step}/{total_steps}: nothing to do')
  return True


def _gin_value(name: str, default=None):
  import gin
  try:
    return gin.query_parameter(name)
  except ValueError:  # not bound: the factory's default
    return default


if __name__ == '__main__':
  common.run(main)
