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
from typing import Sequence

import gin

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import space
from official.autodeeplab.training.experiment import Experiment
from official.autodeeplab.training.experiment import InputConfig
from official.autodeeplab.training.experiment import LoopSettings
from official.autodeeplab.training.experiment import SearchConfig
from official.autodeeplab.training.experiment import TrainConfig
from official.autodeeplab.training.experiment import with_latency_table


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
def search_data(**overrides) -> InputConfig:
  """The search's input with the paper's protocol (crop 321, batch 2, no scale jitter),
  overridden by gin bindings."""
  data = _replace('search_data', InputConfig(), overrides)
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
                   recompute: bool = False, seed: int = 0, runtime=None,
                   input_channels: int = 3):
  """The supernet of an experiment; see `supernet.Supernet` for the arguments; `runtime` (a
  `utils.runtime.Runtime`) gives the BN kernel choice and `input_channels` the images' channels
  (neither is a gin setting: the binary passes them)."""
  from official.autodeeplab.modeling import supernet
  return supernet.Supernet(num_classes, num_layers=num_layers, num_blocks=num_blocks,
                           filter_multiplier=filter_multiplier, recompute=recompute, seed=seed,
                           float32_batch_norm=_float32_batch_norm(runtime),
                           input_channels=input_channels)


@gin.configurable
def retrain_model(genotype, num_classes: int, model_size: str = 'S',
                  filter_multiplier: int | None = None, drop_path_keep_prob: float = 1.0,
                  weight_decay: float = sizes.WEIGHT_DECAY,
                  batch_norm_momentum: float = sizes.BATCH_NORM_MOMENTUM,
                  synchronized: bool | None = None, runtime=None, input_channels: int = 3):
  """The retrain model of an experiment (see `segmenter.build_segmenter`). BN is synchronised
  across replicas when the current strategy has several (`synchronized=None`); `runtime` gives
  the BN kernel choice and `input_channels` the images' channels (neither a gin setting)."""
  import tensorflow as tf
  from official.autodeeplab.modeling import segmenter
  if synchronized is None:
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
  return segmenter.build_segmenter(genotype, num_classes, model_size, filter_multiplier,
                                   synchronized, weight_decay, drop_path_keep_prob,
                                   batch_norm_momentum, _float32_batch_norm(runtime),
                                   input_channels)


def _float32_batch_norm(runtime) -> bool:
  """The runtime's BN kernel choice (the CPU's, float32, without one)."""
  return True if runtime is None else runtime.float32_batch_norm


def retrain_filter_multiplier() -> int:
  """F of the configured retrain model (`retrain_model.model_size` / `.filter_multiplier`), as
  the parsed gin config says, without building it."""
  def bound(name, default=None):
    try:
      return gin.query_parameter(f'retrain_model.{name}')
    except ValueError:  # not bound: the factory's default
      return default
  return sizes.resolve_filter_multiplier(bound('model_size', 'S'), bound('filter_multiplier'))


def experiment(job: str) -> Experiment:
  """The run's configuration from the parsed gin bindings: the search's from `search_config`,
  `search_data` and `loop_settings`; the retrain's from `train_config` (its input and cadence
  too); the precision from `runtime_options`. Validated."""
  precision = runtime_options()['precision']
  if job == 'search':
    config = search_config()
    config.validate()
    config = with_latency_table(config)
    return Experiment.search(config, search_data(), loop_settings(), precision)
  if job != 'train':
    raise ValueError(f'job {job!r}: expected search or train')
  config = train_config()
  config.validate()
  return Experiment.train(config, precision)
