"""What a search is configured with, apart from the supernet: optimisation, data, loop cadence.

Kept free of TensorFlow so a binary can read the configured crop size from gin before it imports
TensorFlow (which fixes, at import, its kernels and allocator: see `utils/cpu_runtime.py`).
`search_task` uses these; gin binds them through the factories at the end (`search_config.*`,
`search_data.*`, `loop_settings.*`).
"""
from __future__ import annotations

import dataclasses

import gin


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
      beta only (no weight gradients). Costs a second trace and instantiation (~19 s and ~0.5 GB
      on 2 CPU cores); saves ~20% of each architecture step at 321 px (3.91 s beside a 4.87 s
      weight step in one benchmark run), hours over the paper's 14,880 architecture steps. Off:
      both steps share one graph (quick runs).
  """
  total_steps: int = 1000
  arch_start_step: int = 500
  weight_lr: float = 0.025
  weight_lr_min: float = 0.001
  weight_momentum: float = 0.9
  weight_decay: float = 3e-4
  arch_lr: float = 3e-3
  arch_weight_decay: float = 1e-3
  arch_beta_1: float = 0.9
  arch_beta_2: float = 0.999
  arch_only_gradients: bool = False


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


@gin.configurable
def search_config(**overrides) -> SearchConfig:
  """SearchConfig with the paper's defaults, overridden by gin bindings."""
  return dataclasses.replace(SearchConfig(), **overrides)


@gin.configurable
def search_data(**overrides) -> SearchData:
  """SearchData with the paper's protocol (crop 321, batch 2, no scale jitter), overridden by gin
  bindings."""
  return dataclasses.replace(SearchData(), **overrides)


@gin.configurable
def loop_settings(**overrides) -> LoopSettings:
  """How often the search loop logs, checkpoints and exports, overridden by gin bindings."""
  return dataclasses.replace(LoopSettings(), **overrides)


def configured_crop_size(gin_files, gin_bindings) -> int | None:
  """`search_data.crop_size` as the gin files and bindings set it, read without TensorFlow.

  Bindings of other configurables are skipped here (the real parse applies them); a file or
  binding that does not parse gives None, and the real parse then reports it.
  """
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(gin_files, gin_bindings, finalize_config=False,
                                        skip_unknown=True)
    return search_data().crop_size
  except Exception:  # noqa: BLE001 (gin raises many types; the real parse names the problem)
    return None
  finally:
    gin.clear_config()
