"""What a run is configured with, as typed data: the search's and the retrain's optimisation
settings, their input, the loop's cadence, and the `Experiment` that holds one of each (one shape
for both jobs, as Model Garden's experiment configs, without the class hierarchy).

Free of TensorFlow and gin: `training/configs.py` builds these from gin's bindings, and a binary
reads them before it imports TensorFlow (the search's crop decides CPU settings fixed at import).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import sizes

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
    cost_target: multiply-adds of the retrained network's cells to aim at (needed with a weight);
      with `latency_table`, the whole network's milliseconds on the table's engine.
    cost_image_size: (height, width) the multiply-adds are counted at (Cityscapes' full size).
    cost_filter_multiplier: F of the retrained network they are counted for (20: S).
    latency_table: a table measured by tools.latency (JSON); when set, the cost term is the
      expected latency of the whole network on that engine instead of multiply-adds
      (`search/cost.Latency`), and cost_image_size and cost_filter_multiplier are taken from the
      table (bound to other values than their defaults and the table's, they are refused). The
      search copies it into its workdir (latency_table.json), which a resume then reads.
    track_sharpness: at each export, the dominant eigenvalue of the Hessian of the trainB loss
      with respect to alpha and beta (`training/sharpness.py`; Zela et al., ICLR 2020: it grows
      before a DARTS-style search collapses onto parameter-free ops), into arch_history.jsonl
      (`dominant_eigenvalue`) and TensorBoard. Costs `sharpness_iterations` Hessian-vector
      products per export.
    sharpness_iterations: power iterations per measurement.
    stop_on_sharpness: when positive (needs track_sharpness), Zela et al.'s early stop with a
      window of this many exports: stop when the mean eigenvalue of the last window exceeds the
      window before it by a factor 1 / 0.75, and keep the genotype of the export a window back.
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
  latency_table: str = ''
  track_sharpness: bool = False
  sharpness_iterations: int = 10
  stop_on_sharpness: int = 0

  def validate(self) -> None:
    if self.sharpness_iterations < 1:
      raise UserInputError(f'search_config.sharpness_iterations={self.sharpness_iterations}: '
                           'must be at least 1')
    if self.stop_on_sharpness < 0:
      raise UserInputError(f'search_config.stop_on_sharpness={self.stop_on_sharpness}: expected 0 '
                           '(off) or a window of exports')
    if self.stop_on_sharpness and not self.track_sharpness:
      raise UserInputError(f'search_config.stop_on_sharpness={self.stop_on_sharpness} needs '
                           'search_config.track_sharpness = True (it stops on the measured '
                           'eigenvalue)')
    if self.stop_when_stable < 0:
      raise UserInputError(f'search_config.stop_when_stable={self.stop_when_stable}: expected 0 '
                           '(off) or the number of exports in a row with the same genotype')
    if self.cost_weight < 0:
      raise UserInputError(f'search_config.cost_weight={self.cost_weight}: must be 0 (off) or '
                           'positive')
    if self.cost_weight and self.cost_target <= 0:
      if self.latency_table:
        raise UserInputError(f'search_config.cost_target={self.cost_target}: with '
                             f'search_config.latency_table and cost_weight={self.cost_weight}, '
                             'expected the latency to aim at in milliseconds (> 0), e.g. from '
                             'tools.describe --genotype=paper --latency_table=...')
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


def with_latency_table(config: SearchConfig) -> SearchConfig:
  """`config` with cost_image_size and cost_filter_multiplier taken from its latency table (read
  and checked whole); a value bound to neither its default nor the table's is refused. Unchanged
  without a table."""
  if not config.latency_table:
    return config
  from official.autodeeplab.search import latency_table
  table = latency_table.read(config.latency_table)
  setting, defaults = table['measured_for'], SearchConfig()
  changes = {}
  for name, key in (('cost_image_size', 'input_size'),
                    ('cost_filter_multiplier', 'filter_multiplier')):
    value, default, measured = getattr(config, name), getattr(defaults, name), setting[key]
    as_list = lambda x: list(x) if isinstance(x, (tuple, list)) else x
    if as_list(value) not in (as_list(default), as_list(measured)):
      raise UserInputError(
          f'search_config.{name}={value} disagrees with search_config.latency_table='
          f'{config.latency_table}, measured for {key} {measured}: unbind it (it is then taken '
          'from the table) or measure a table for it')
    changes[name] = tuple(measured) if isinstance(measured, list) else measured
  return dataclasses.replace(config, **changes)


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
class InputConfig:
  """A job's training input; the defaults are the search's (paper sec. 5.1: 321x321 random crops
  of half-resolution images, batch 2), which gin binds as `search_data.*`; the retrain's come
  from `train_config.*`.

  Attributes:
    crop_size: square random crop.
    batch_size: global batch of each step (the search: trainA for the weights, trainB for the
      architecture).
    min_scale: random scale range before cropping; the search's 1.0 / 1.0 (none) is the paper's
      protocol, any other range an explicit extra augmentation.
    max_scale: see min_scale.
    max_image_side: images shrunk so their longer side is at most this before the random scale
      (None: kept).
  """
  crop_size: int = 321
  batch_size: int = 2
  min_scale: float = 1.0
  max_scale: float = 1.0
  max_image_side: int | None = None

  def validate(self, name: str = 'search_data') -> None:
    for field in ('crop_size', 'batch_size'):
      if getattr(self, field) < 1:
        raise UserInputError(f'{name}.{field}={getattr(self, field)}: must be positive')
    if not 0 < self.min_scale <= self.max_scale:
      raise UserInputError(f'{name}.min_scale/max_scale={self.min_scale}/{self.max_scale}: '
                           'expected 0 < min_scale <= max_scale')


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """The loop's cadence (steps), for either job; gin binds the search's as `loop_settings.*`, the
  retrain's as `train_config.*` (log_every, checkpoint_every, max_checkpoints,
  image_summary_every, eval_every).

  Attributes:
    log_every: progress line and TensorBoard scalars (losses, trainB mIoU, images/s).
    checkpoint_every: checkpoints (the last step is always saved).
    max_checkpoints: checkpoints kept in the workdir.
    export_every: the search's genotype.json, architecture.png, arch.npz and TensorBoard images
      of softmax(alpha) and the transition probabilities, plus the decoded architecture as text.
    image_summary_every: the retrain's TensorBoard images (image, ground truth, prediction).
    eval_every: the retrain's validation on the eval split (the best weights kept); 0: off.
  """
  log_every: int = 10
  checkpoint_every: int = 100
  export_every: int = 500
  max_checkpoints: int = 3
  image_summary_every: int = 2000
  eval_every: int = 0


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


JOBS = ('search', 'train')


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One run: the job, its optimisation settings, its input, the loop's cadence and precision.

  Attributes:
    job: 'search' or 'train'.
    task: `SearchConfig` or `TrainConfig`.
    data: the training input.
    loop: how often the loop logs, saves, exports and validates.
    precision: 'float32', 'bfloat16' or 'float16' (`runtime_options.precision`).
  """
  job: str
  task: SearchConfig | TrainConfig
  data: InputConfig
  loop: LoopSettings
  precision: str = 'float32'

  @classmethod
  def search(cls, task: SearchConfig = SearchConfig(), data: InputConfig = InputConfig(),
             loop: LoopSettings = LoopSettings(), precision: str = 'float32') -> 'Experiment':
    """A search's experiment (the paper's settings by default)."""
    return cls('search', task, data, loop, precision)

  @classmethod
  def train(cls, task: TrainConfig, precision: str = 'float32') -> 'Experiment':
    """A retrain's experiment: its input and cadence are `task`'s fields (gin's
    `train_config.*`)."""
    data = InputConfig(task.crop_size, task.batch_size, task.min_scale, task.max_scale,
                       task.max_image_side)
    loop = LoopSettings(log_every=task.log_every, checkpoint_every=task.checkpoint_every,
                        max_checkpoints=task.max_checkpoints,
                        image_summary_every=task.image_summary_every, eval_every=task.eval_every)
    return cls('train', task, data, loop, precision)

  @property
  def total_steps(self) -> int:
    return self.task.total_steps

  def for_dataset(self, num_examples: int, num_steps: int | None = None) -> 'Experiment':
    """Lengths in epochs turned into steps for a training split of `num_examples` images (the
    search's trainA is half of it), then `num_steps` (--num_steps), when given, as the total:
    the schedule's length too; the search's warm-up stays."""
    if num_steps is not None and num_steps < 1:
      raise UserInputError(f'num_steps={num_steps}: must be positive')
    examples = num_examples // 2 if self.job == 'search' else num_examples
    task = with_epochs(self.task, examples, self.data.batch_size)
    if num_steps is not None:
      task = dataclasses.replace(task, total_steps=num_steps)
    return dataclasses.replace(self, task=task)
