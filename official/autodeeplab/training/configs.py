"""What the search and the retrain are configured with, and the gin factories that bind it.

Free of TensorFlow, so a binary parses its gin files once, reads what it needs to choose the
runtime (`utils/runtime.py`: the search's crop decides CPU settings fixed when TensorFlow is
imported), and only then imports TensorFlow. gin configures the factories at the end, never the
Keras classes (gin on a Keras 3 Layer subclass breaks); the model factories import their modules
when called. A misspelt setting is one line naming the configurable.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import ClassVar, Sequence

import gin

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import space


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Optimisation settings of the search; defaults are the paper's.

  Attributes:
    total_steps: weight steps in the whole search (the cosine schedule's length).
    arch_start_step: first weight step after which architecture steps run.
    weight_lr: cosine schedule from weight_lr to weight_lr_min.
    weight_lr_min: see weight_lr.
    weight_momentum: SGD momentum.
    weight_decay: L2 on the weights, added to the gradient.
    arch_lr: Adam learning rate of alpha and beta.
    arch_weight_decay: L2 on alpha and beta, added to the gradient.
    arch_beta_1: Adam's first-moment decay for alpha and beta. The paper names Adam with its
      learning rate and weight decay only; the PyTorch reimplementation keeps PyTorch's defaults
      (0.9, 0.999), which are also TensorFlow's, so those are used here. DARTS uses 0.5: faster
      reacting architecture updates; set it here to follow DARTS.
    arch_beta_2: Adam's second-moment decay.
    arch_only_gradients: architecture steps run their own graph that differentiates alpha and
      beta only (no weight gradients). Costs a second trace and instantiation at start-up and
      saves part of every architecture step at large crops (docs/performance.md), which adds up
      over the paper's 14,880 architecture steps. Off: both steps share one graph (quick runs).
    num_epochs: when positive, the search's length in epochs of trainA (half the split) instead
      of total_steps: a length that fits a dataset of any size (`with_epochs`).
    arch_start_epoch: with num_epochs, when the architecture steps start (in epochs).
    stop_when_stable: when positive, the search stops (final files written, exit 0) at the
      first `stop_when_stable` exports in a row, all at steps after arch_start_step, that decode
      the same genotype (arch_history.jsonl); 0: run every step (the paper's protocol).
    cost_weight: weight of the cost term of the architecture loss, 0 (the paper: accuracy only)
      or positive: cost_weight * max(0, log(E[cells' multiply-adds] / cost_target)), a hinge on
      the log of the expected count relative to the target (`search/cost.expected_cells`): no pull
      below the target, and a pull that does not depend on the count's scale.
    cost_target: multiply-adds of the retrained network's cells to aim at (needed with a weight).
    cost_image_size: (height, width) the multiply-adds are counted at (Cityscapes' full size).
    cost_filter_multiplier: F of the retrained network they are counted for (20: S).
  """
  total_steps: int = 1000
  arch_start_step: int = 500
  num_epochs: float = 0.0
  arch_start_epoch: float = 0.0
  stop_when_stable: int = 0
  cost_weight: float = 0.0
  cost_target: float = 0.0
  cost_image_size: tuple[int, int] = (1024, 2048)
  cost_filter_multiplier: int = 20

  def validate(self) -> None:
    if self.stop_when_stable < 0:
      raise UserInputError(f'search_config.stop_when_stable={self.stop_when_stable}: expected 0 '
                           '(off) or the number of exports in a row with the same genotype')
    if self.cost_weight < 0:
      raise UserInputError(f'search_config.cost_weight={self.cost_weight}: must be 0 (off) or '
                           'positive')
    if self.cost_weight and self.cost_target <= 0:
      raise UserInputError(f'search_config.cost_weight={self.cost_weight} needs '
                           'search_config.cost_target (the cells\' multiply-adds to aim at, '
                           'e.g. from tools.describe --genotype=paper --model_size=S)')
    sizes.check_image_size(*self.cost_image_size, 'search_config.cost_image_size')
    if self.cost_filter_multiplier < 1:
      raise UserInputError(f'search_config.cost_filter_multiplier={self.cost_filter_multiplier}: '
                           'must be positive')
  weight_lr: float = 0.025
  weight_lr_min: float = 0.001
  weight_momentum: float = 0.9
  weight_decay: float = 3e-4
  arch_lr: float = 3e-3
  arch_weight_decay: float = 1e-3
  arch_beta_1: float = 0.9
  arch_beta_2: float = 0.999
  arch_only_gradients: bool = False


def with_epochs(config, num_examples: int, batch_size: int):
  """`config` (SearchConfig or TrainConfig) with total_steps (and the search's arch_start_step)
  from its num_epochs over `num_examples` images in batches of `batch_size`; unchanged when
  num_epochs is 0 (steps given directly)."""
  if config.num_epochs < 0 or getattr(config, 'arch_start_epoch', 0) < 0:
    raise UserInputError(f'num_epochs={config.num_epochs}: must be positive (0: total_steps)')
  if not config.num_epochs:
    return config
  steps = lambda epochs: max(1, math.ceil(epochs * num_examples / batch_size))
  changes = {'total_steps': steps(config.num_epochs)}
  if hasattr(config, 'arch_start_epoch'):
    changes['arch_start_step'] = steps(config.arch_start_epoch) if config.arch_start_epoch else 0
  return dataclasses.replace(config, **changes)


@dataclasses.dataclass(frozen=True)
class SearchData:
  """The search's input (paper sec. 5.1: 321x321 random crops of half-resolution images, batch 2).

  Attributes:
    crop_size: square random crop.
    batch_size: global batch of each step (trainA for the weights, trainB for the architecture).
    min_scale: random scale range before cropping; 1.0 / 1.0 (none) is the paper's protocol, any
      other range an explicit extra augmentation.
    max_scale: see min_scale.
  """
  crop_size: int = 321
  batch_size: int = 2
  min_scale: float = 1.0
  max_scale: float = 1.0

  def validate(self) -> None:
    for name in ('crop_size', 'batch_size'):
      if getattr(self, name) < 1:
        raise UserInputError(f'search_data.{name}={getattr(self, name)}: must be positive')
    if not 0 < self.min_scale <= self.max_scale:
      raise UserInputError(f'search_data.min_scale/max_scale={self.min_scale}/{self.max_scale}: '
                           'expected 0 < min_scale <= max_scale')


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """How often the loop reports, saves and exports (steps).

  Attributes:
    log_every: progress line and TensorBoard scalars (losses, trainB mIoU, images/s).
    checkpoint_every: checkpoints (the last step is always saved).
    export_every: genotype.json, architecture.png, arch.npz and TensorBoard images of softmax(alpha)
      and the transition probabilities, plus the decoded architecture as text.
  """
  log_every: int = 10
  checkpoint_every: int = 100
  export_every: int = 500


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The retrain protocol; defaults are the paper's Cityscapes settings.

  Attributes:
    total_steps: training steps (the poly schedule's length; 1.5M in the paper for Cityscapes).
    batch_size: global batch size (split over the replicas).
    crop_size: square training crop (769 Cityscapes, 513 VOC / ADE20K).
    min_scale: random scale augmentation range.
    max_scale: see min_scale.
    max_image_side: shrink training images so their longer side is at most this before the
      random scale (513 for ADE20K in the paper; None: keep their size).
    learning_rate: poly schedule's initial learning rate.
    end_learning_rate: the rate at total_steps.
    lr_power: poly schedule's power.
    warmup_steps: linear warm-up steps before the poly schedule (0 in the paper).
    momentum: SGD momentum.
    log_every: steps between progress lines and TensorBoard scalars.
    checkpoint_every: steps between checkpoints (the last step is always saved).
    image_summary_every: steps between TensorBoard images (image, ground truth, prediction).
    max_checkpoints: checkpoints kept in the workdir.
    eval_every: steps between validations of the model on the eval split (single scale; the best
      one kept in workdir/best/); 0: off.
    top_k_percent_pixels: the loss averages the hardest fraction of each replica's labelled
      pixels only (DeepLab's online hard-pixel mining); 1.0: every labelled pixel, the paper.
    hard_example_mining_step: steps over which that fraction ramps linearly from 1.0 to
      top_k_percent_pixels (0: from the start).
    num_epochs: when positive, the length in epochs of the training split instead of
      total_steps (`with_epochs`).
    jit_compile: each replica's forward and backward pass compiled with XLA (the update and the
      all-reduce stay outside). Off by default: measure it on your device (docs/performance.md
      has the CPU figures).
  """
  total_steps: int = 1_500_000
  batch_size: int = 8
  crop_size: int = 769
  min_scale: float = 0.5
  max_scale: float = 2.0
  max_image_side: int | None = None
  learning_rate: float = 0.05
  end_learning_rate: float = 0.0
  lr_power: float = 0.9
  warmup_steps: int = 0
  momentum: float = 0.9
  top_k_percent_pixels: float = 1.0
  hard_example_mining_step: int = 0
  num_epochs: float = 0.0
  jit_compile: bool = False
  # The loop's cadence. `validate` checks that these and the sizes above are positive.
  POSITIVE: ClassVar[tuple[str, ...]] = (
      'total_steps', 'batch_size', 'crop_size', 'log_every', 'checkpoint_every',
      'image_summary_every', 'max_checkpoints')
  log_every: int = 100
  checkpoint_every: int = 2000
  image_summary_every: int = 2000
  max_checkpoints: int = 3
  eval_every: int = 0

  def validate(self) -> None:
    for name in self.POSITIVE:
      if getattr(self, name) < 1:
        raise UserInputError(f'train_config.{name}={getattr(self, name)}: must be positive')
    if not 0 < self.min_scale <= self.max_scale:
      raise UserInputError(f'train_config.min_scale/max_scale={self.min_scale}/{self.max_scale}: '
                           'expected 0 < min_scale <= max_scale')
    if self.learning_rate <= 0:
      raise UserInputError(f'train_config.learning_rate={self.learning_rate}: must be positive')
    if not 0 < self.top_k_percent_pixels <= 1:
      raise UserInputError(f'train_config.top_k_percent_pixels={self.top_k_percent_pixels}: '
                           'expected a fraction in (0, 1]')
    for name in ('eval_every', 'hard_example_mining_step'):
      if getattr(self, name) < 0:
        raise UserInputError(f'train_config.{name}={getattr(self, name)}: must be >= 0')


def _replace(name: str, default, overrides: dict):
  """`default` with gin's `overrides`; an unknown setting (with the nearest valid names) or a value
  of the wrong type is a one-line error naming it."""
  fields = {f.name: f for f in dataclasses.fields(default)}
  overrides = dict(overrides)
  for key, value in list(overrides.items()):
    if key not in fields:
      near = difflib.get_close_matches(key, fields, n=3)
      hint = f'; did you mean {" or ".join(near)}?' if near else ''
      raise UserInputError(f'{name}.{key}: no such setting{hint} (settings: '
                           f'{", ".join(fields)})')
    current = getattr(default, key)
    if isinstance(current, tuple) and isinstance(value, list):  # gin's [a, b] for a pair
      value = overrides[key] = tuple(value)
    if not _same_kind(value, current):
      raise UserInputError(f'{name}.{key} = {value!r}: expected a {type(current).__name__}')
  return dataclasses.replace(default, **overrides)


def _same_kind(value, default) -> bool:
  """Whether a gin value may replace `default`: an int where a float is expected, None where
  the default is None (an optional setting), otherwise the same type (bool is not an int)."""
  if default is None or value is None:
    return default is None
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(default, bool) and isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  return isinstance(value, type(default))


@gin.configurable
def search_config(**overrides) -> SearchConfig:
  """SearchConfig with the paper's defaults, overridden by gin bindings."""
  return _replace('search_config', SearchConfig(), overrides)


@gin.configurable
def search_data(**overrides) -> SearchData:
  """SearchData with the paper's protocol (crop 321, batch 2, no scale jitter), overridden by gin
  bindings."""
  data = _replace('search_data', SearchData(), overrides)
  data.validate()
  return data


@gin.configurable
def loop_settings(**overrides) -> LoopSettings:
  """How often the search loop logs, checkpoints and exports, overridden by gin bindings."""
  return _replace('loop_settings', LoopSettings(), overrides)


@gin.configurable
def train_config(**overrides) -> TrainConfig:
  """TrainConfig with the paper's defaults, overridden by gin bindings."""
  return _replace('train_config', TrainConfig(), overrides)


@gin.configurable
def runtime_options(precision: str = 'float32') -> dict:
  """How the process computes, beside the device's own choices (`utils/runtime.py`):
  `precision` 'float32', 'bfloat16' or 'float16' (the --precision flag overrides it)."""
  return {'precision': precision}


@gin.configurable
def inference_options(scales: Sequence[float] = (1.0,), flip: bool = False) -> dict:
  """Evaluation-time inference of an experiment: scales and flip (the paper's multi-scale results
  use `evaluation.MULTI_SCALES` with flips)."""
  return {'scales': tuple(float(s) for s in scales), 'flip': bool(flip)}


@gin.configurable
def build_supernet(num_classes: int, num_layers: int = space.NUM_LAYERS,
                   num_blocks: int = space.NUM_BLOCKS,
                   filter_multiplier: int = space.SEARCH_FILTER_MULTIPLIER,
                   recompute: bool = False, seed: int = 0):
  """The supernet of an experiment; see `supernet.Supernet` for the arguments."""
  from official.autodeeplab.modeling import supernet
  return supernet.Supernet(num_classes, num_layers=num_layers, num_blocks=num_blocks,
                           filter_multiplier=filter_multiplier, recompute=recompute, seed=seed)


@gin.configurable
def retrain_model(genotype, num_classes: int, model_size: str = 'S',
                  filter_multiplier: int | None = None, drop_path_keep_prob: float = 1.0,
                  weight_decay: float = sizes.WEIGHT_DECAY,
                  batch_norm_momentum: float = sizes.BATCH_NORM_MOMENTUM,
                  synchronized: bool | None = None):
  """The retrain model of an experiment (see `segmenter.build_segmenter`). BN is synchronised
  across replicas when the current strategy has several (`synchronized=None`)."""
  import tensorflow as tf
  from official.autodeeplab.modeling import segmenter
  if synchronized is None:
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
  return segmenter.build_segmenter(genotype, num_classes, model_size, filter_multiplier,
                                   synchronized, weight_decay, drop_path_keep_prob,
                                   batch_norm_momentum)


def retrain_filter_multiplier() -> int:
  """F of the configured retrain model (`retrain_model.model_size` / `.filter_multiplier`), as
  the parsed gin config says, without building it."""
  def bound(name, default=None):
    try:
      return gin.query_parameter(f'retrain_model.{name}')
    except ValueError:  # not bound: the factory's default
      return default
  return sizes.resolve_filter_multiplier(bound('model_size', 'S'), bound('filter_multiplier'))
