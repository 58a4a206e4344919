"""Architectures scored inside a trained search supernet, without retraining: does weight sharing
rank them as standalone training does (Yu et al., "Evaluating the search phase of NAS", ICLR
2020; `tools.baseline --search_workdir`)?

One architecture is set exactly inside the supernet: the op weights one-hot on each block's two
chosen (input, op) pairs, every other edge of the cell all-zero (the `zero` op, so its kernels
get no gradient and add nothing), and the transition probabilities one-hot along the genotype's
path (every other node of the trellis receives nothing). The softmax over alpha and beta is
bypassed, so nothing of the search's architecture leaks in. What the supernet cannot express
stays as the supernet computes it: a cell's H^{l-2} is the node of the same level two layers back
(zero when the path was elsewhere), not the retrain network's resized one.

BN: the search supernet always normalises with batch moments (`modeling/supernet.py`), and
one-shot evaluations recompute BN statistics for each sub-architecture rather than reuse shared
running averages (Bender et al., ICML 2018; Guo et al., single-path one-shot, ECCV 2020), so
every architecture is scored in training mode, each trainB batch normalised by its own moments
under that architecture. The score is the mIoU over trainB (the search's architecture half of
the train split, by `input_pipeline.split_in_halves`), no augmentation.
"""
from __future__ import annotations

import os
import typing

import numpy as np
import tensorflow as tf

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import evaluation
from official.autodeeplab.training import search_outputs

EVAL_BATCH_SIZE = 4


class Supernet(typing.NamedTuple):
  """A search workdir's supernet, restored."""
  model: typing.Any
  workdir: str
  step: int


def load(workdir: str, flag: str = '--search_workdir') -> Supernet:
  """The supernet of a search workdir at its latest checkpoint; a workdir without one (or
  without supernet.json) is refused, naming `flag`."""
  if not os.path.exists(os.path.join(workdir, search_outputs.SUPERNET_FILE)) or \
      not checkpoints.latest_readable(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
    raise UserInputError(f'{flag}={workdir}: no supernet checkpoint there (a tools.search workdir '
                         f'with {search_outputs.SUPERNET_FILE} and {checkpoints.CHECKPOINT_DIR}/ '
                         'is needed)')
  model, step = search_outputs.restore_supernet(workdir)
  return Supernet(model, workdir, step)


def check_space(supernet: Supernet, genotype: genotype_lib.Genotype, what: str) -> None:
  """A genotype of another L or B than the supernet cannot be set inside it."""
  model = supernet.model
  if (genotype.num_layers, genotype.num_blocks) != (model.num_layers, model.num_blocks):
    raise UserInputError(f'{what}: its supernet has L={model.num_layers} B={model.num_blocks}, '
                         f'the genotypes L={genotype.num_layers} B={genotype.num_blocks}')


def one_hot(genotype: genotype_lib.Genotype,
            num_levels: int = space.NUM_LEVELS) -> tuple[np.ndarray, np.ndarray]:
  """(op weights [edges, ops], transition probabilities [L, levels, 3]) of exactly `genotype`:
  1 on each chosen (edge, op) (2 if a block takes the same input and op twice), 0 elsewhere;
  1 on each transition of the path, starting from the stem at level 0."""
  ops = np.zeros((space.num_edges(genotype.num_blocks), len(space.PRIMITIVES)), np.float32)
  for block, pairs in enumerate(genotype.cell):
    for source, op in pairs:
      ops[space.edge_index(block, source), space.PRIMITIVES.index(op)] += 1.0
  transitions = np.zeros((genotype.num_layers, num_levels, 3), np.float32)
  previous = 0
  for layer, level in enumerate(genotype.path):
    transitions[layer, previous, level - previous + 1] = 1.0
    previous = level
  return ops, transitions


def trainb_batches(tfrecord_dir: str, num_classes: int, batch_size: int = EVAL_BATCH_SIZE):
  """trainB of `tfrecord_dir`'s train split as a list of (images, labels) batches (read once,
  scored many times); its class count must be the supernet's."""
  files = input_pipeline.split_files(tfrecord_dir, 'train')
  classes = input_pipeline.num_classes(tfrecord_dir, 'train')
  if classes != num_classes:
    raise UserInputError(f'--tfrecord_dir={tfrecord_dir}: {classes} classes, the supernet '
                         f'{num_classes}: score architectures on the data it was searched on')
  image = input_pipeline.dataset_spec(tfrecord_dir, 'train').image
  dataset = input_pipeline.from_tfrecords(files, batch_size, training=False, half='trainB',
                                          image=image)
  return list(dataset)


def score(supernet: Supernet, genotypes: list[genotype_lib.Genotype], tfrecord_dir: str,
          batch_size: int = EVAL_BATCH_SIZE) -> list[float]:
  """Each genotype's trainB mIoU inside the supernet (see the module docstring)."""
  model = supernet.model
  batches = trainb_batches(tfrecord_dir, model.num_classes, batch_size)

  @tf.function(reduce_retracing=True)
  def predict(images, ops, transitions):
    logits = model(images, training=True, architecture=(ops, transitions))
    return tf.argmax(logits, -1, output_type=tf.int32)

  metrics = evaluation.SegmentationMetrics(model.num_classes)
  scores = []
  for genotype in genotypes:
    ops, transitions = (tf.constant(a) for a in one_hot(genotype, model.num_levels))
    metrics.reset()
    for images, labels in batches:
      metrics.update(labels, predict(images, ops, transitions))
    scores.append(float(evaluation.scores(metrics.confusion_matrix())['miou']))
  return scores
