"""A binary's process set-up, every step in one order, once (Model Garden's `train.py`, small).

`start(job, ...)` is what each binary calls after parsing its flags and before its task:
  0. under `multi_worker`, TF_CONFIG and the worker count checked (`training/workers.py`);
  1. the workdir's lock (one writer per workdir, `utils/workdir_lock.py`), before any work;
  2. gin parsed once: the files, then the bindings (the binary's flags among them, so
     `operative_config.gin` records them), one line for a file or binding at fault;
  3. the run's `Experiment` from gin (`training/configs.experiment`), for the search and retrain;
  4. the device probed and the runtime resolved from the job, the search's crop and the
     precision (`utils/runtime.py`), and applied: all of it before TensorFlow is imported, since
     some of TensorFlow's choices are fixed at import;
  5. TensorFlow's graph optimizer, the Keras precision policy and the device's kernels for it;
  6. the seed of every layer's initialisation;
  7. the tf.distribute strategy (models and optimizers are built in its scope by the task); under
     `multi_worker` after TensorFlow's coordination service is given the peer timeout.
Objects that need a runtime choice receive the returned `Process.runtime`; nothing else applies
one. Nothing here parses flags: the binaries pass values (and say which flag gave the precision).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

from official.autodeeplab.errors import UserInputError

JOBS = ('search', 'train', 'inference')


@dataclasses.dataclass(frozen=True)
class Process:
  """What `start` set up.

  Attributes:
    runtime: the `utils.runtime.Runtime` applied (device, CPU choices, precision).
    strategy: the tf.distribute strategy (None when `start` was asked for none).
    experiment: the search's or retrain's `training.experiment.Experiment` from gin (None for
      inference).
    cluster: TF_CONFIG's `training.workers.Cluster` under `multi_worker` (None otherwise).
  """
  runtime: Any
  strategy: Any = None
  experiment: Any = None
  cluster: Any = None

  def operative_config(self) -> str:
    """gin's operative configuration (what ran), for the workdir."""
    import gin
    return gin.operative_config_str()


def start(job: str, *, workdir: str | None = None, lock: bool = False,
          strategy: str | None = 'default', tpu: str = '', seed: int | None = None,
          gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
          precision: str | None = None, precision_flag: str = '--precision',
          peer_timeout_s: float | None = None) -> Process:
  """Sets the process up for `job` ('search', 'train' or 'inference'), as the module docstring
  says. `precision` is the flag's value when given (it becomes a gin binding of
  `runtime_options.precision`; errors then name `precision_flag`); `strategy=None` builds none.
  `peer_timeout_s`: under `multi_worker`, how long a silent peer is waited for (default
  `workers.DEFAULT_PEER_TIMEOUT_S`)."""
  if job not in JOBS:
    raise ValueError(f'job {job!r}: expected one of {JOBS}')
  from official.autodeeplab.training import workers
  from official.autodeeplab.utils import runtime as runtime_lib
  from official.autodeeplab.utils import workdir_lock
  cluster = None
  if peer_timeout_s is not None:
    workers.check_peer_timeout(peer_timeout_s)
  if strategy == 'multi_worker':
    cluster = workers.read_cluster()
  if lock:
    workers.check_worker_count(workdir, job, cluster.num_workers if cluster else 1)
  if workdir and lock:
    workdir_lock.lock(workdir, strategy or 'default')
  bindings = list(gin_bindings)
  if precision is not None:
    runtime_lib.check_precision(precision, source=precision_flag)  # the device is checked below
    bindings.append(f'runtime_options.precision = "{precision}"')
  from official.autodeeplab.training import configs  # registers the configurables; no TensorFlow
  parse_gin(gin_files, bindings)
  experiment = configs.experiment(job) if job != 'inference' else None
  device = runtime_lib.probe_device(strategy or 'default')
  source = precision_flag if precision is not None else 'runtime_options.precision'
  chosen = runtime_lib.check_precision(configs.runtime_options()['precision'], device, source)
  runtime = runtime_lib.resolve(job, experiment.data.crop_size if experiment else None, device,
                                precision=chosen)
  runtime.apply()
  _configure_tensorflow(runtime)
  if seed is not None:
    import keras
    keras.utils.set_random_seed(seed)  # deterministic initialisation of every layer
  built = None
  if strategy is not None:
    from official.autodeeplab.training import distribute
    if cluster is not None:
      workers.configure_coordination(cluster, peer_timeout_s or workers.DEFAULT_PEER_TIMEOUT_S)
    built = distribute.get_strategy(strategy, tpu)
  return Process(runtime, built, experiment, cluster)


def _configure_tensorflow(runtime) -> None:
  """After TensorFlow is imported: Grappler as the runtime says, the Keras policy of its
  precision, and the device's kernels for it checked with a tiny eager step (a TPU computes
  bfloat16 natively)."""
  from official.autodeeplab.modeling import precision
  from official.autodeeplab.training import distribute
  distribute.configure_graph_optimizer(runtime.graph_optimizer)
  precision.set_policy(runtime)
  if runtime.device != 'tpu':
    precision.check_kernels(runtime.precision, runtime.device)


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files, then bindings; a missing file, a file or binding that does not parse or
  names nothing configurable is one line naming the file (and line) or the binding."""
  import importlib.util  # noqa: F401 (gin's `include` needs it imported)
  import gin
  for path in gin_files:
    if not os.path.isfile(path):
      raise UserInputError(f'--gin_file={path}: no such file')
  for path in gin_files:
    try:
      gin.parse_config_file(path)
    except Exception as e:  # gin raises many types (ValueError, KeyError, SyntaxError...)
      raise UserInputError(gin_error(f'--gin_file={path}', e)) from None
  try:
    gin.parse_config(list(gin_bindings))
  except Exception as e:
    raise UserInputError(gin_error('--gin_bindings', e)) from None


def gin_error(source: str, error: BaseException) -> str:
  """One line for a gin parse error: where (file and line, or the bindings) and what, with the
  nearest configurable names for a misspelt one."""
  text = str(error).strip()
  first = text.splitlines()[0] if text else type(error).__name__
  unknown = re.match(r"No configurable matching '([\w.]+)'", first)
  if unknown:
    first = first.rstrip('.') + _configurable_hint(unknown.group(1))
  located = re.search(r'In file "(.+?)", line (\d+)', text)
  if located:  # an included file or a configurable's own error: gin appends the location
    return f'--gin_file={located.group(1)}, line {located.group(2)}: {first}'
  if isinstance(error, SyntaxError) and error.lineno:
    return f'{source}, line {error.lineno}: {error.msg}'
  if type(error).__name__ == 'TokenError':  # tokenize's ('EOF in multi-line statement', (l, c))
    message, (line, _) = error.args
    return f'{source}, line {line}: {message} (an unclosed bracket or string?)'
  located = re.search(r'In bindings string line (\d+)', text)
  if located and source == '--gin_bindings':
    return f'--gin_bindings (binding {located.group(1)}): {first}'
  return f'{source}: {first}'


def _configurable_hint(name: str) -> str:
  """'; did you mean X?' for a misspelt configurable (gin's registry holds the names the
  imported modules registered), or the list of them."""
  import difflib
  import gin
  try:  # gin has no public listing of its registry
    names = sorted({selector.rsplit('.', 1)[-1] for selector, _ in gin.config._REGISTRY.items()})
  except AttributeError:
    return ''
  near = difflib.get_close_matches(name.rsplit('.', 1)[-1], names, n=3)
  if near:
    return f'; did you mean {" or ".join(near)}?'
  return f' (configurables: {", ".join(names)})' if names else ''
