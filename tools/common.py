"""What every binary shares: quiet TensorFlow logs, gin flags, and bad input as one line + exit 2.

TensorFlow's C++ start-up messages ("Could not find cuda drivers", "failed call to cuInit", oneDNN
notices, "All log messages before absl::InitializeLog()") are printed before TF_CPP_MIN_LOG_LEVEL
takes effect, straight to file descriptor 2, and read like failures on a machine without a GPU.
`run` routes that descriptor through a thread that drops exactly those lines (and TensorFlow's
Python deprecation notices) and passes everything else through as it comes: errors and real
warnings still show.
"""
from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from typing import Callable

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from official.autodeeplab.data.converters import synthetic  # noqa: E402
from official.autodeeplab.errors import PeerLost  # noqa: E402
from official.autodeeplab.errors import Preempted  # noqa: E402
from official.autodeeplab.errors import UserInputError  # noqa: E402

EXIT_BAD_INPUT = 2


def define_gin_flags() -> None:
  flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), applied in order.')
  flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings applied after the files, e.g. '
                            '"build_supernet.num_layers = 4".')


# Flags several binaries share: name -> (definer, default, help). `define_flags` defines them.
SHARED_FLAGS = {
    'workdir': (flags.DEFINE_string, None, 'The run\'s directory (checkpoints, TensorBoard, '
                'what the stage writes).'),
    'tfrecord_dir': (flags.DEFINE_string, None, 'Converted dataset (tools.convert_dataset '
                     'output).'),
    'split': (flags.DEFINE_string, 'train', 'Split of --tfrecord_dir to read.'),
    'strategy': (flags.DEFINE_string, 'default', 'tf.distribute strategy: default, one_device, '
                 'mirrored, multi_worker, tpu.'),
    'tpu': (flags.DEFINE_string, '', 'TPU address for --strategy=tpu.'),
    'peer_timeout_s': (flags.DEFINE_float, 60.0, '--strategy=multi_worker: seconds a silent peer '
                       'is waited for (TensorFlow\'s heartbeat timeout); then every remaining '
                       'worker stops, naming it, with exit code 75 (restart the whole job to '
                       'resume).'),
    'seed': (flags.DEFINE_integer, 0, 'Initialisation and data seed.'),
    'checkpoint': (flags.DEFINE_string, None, 'Checkpoint prefix, or "best" (the best validated '
                   'weights, workdir/best/); default: the workdir\'s latest.'),
    'genotype': (flags.DEFINE_string, 'paper', '"paper" or a genotype JSON file (tools.search '
                 'output).'),
    'model_size': (flags.DEFINE_string, None, 'S, M or L (F = 20/32/48).'),
    'filter_multiplier': (flags.DEFINE_integer, None, 'F; overrides --model_size.'),
    'num_classes': (flags.DEFINE_integer, synthetic.NUM_CLASSES, 'Classes (of the synthetic '
                    'dataset, or of a model built without a workdir).'),
    'num_examples': (flags.DEFINE_integer, synthetic.NUM_EXAMPLES, 'Images of the synthetic '
                     'dataset.'),
    'image_size': (flags.DEFINE_integer, synthetic.IMAGE_SIZE, 'Side of the synthetic images.'),
    'batch_size': (flags.DEFINE_integer, None, 'Global batch; overrides the gin file.'),
    'crop_size': (flags.DEFINE_integer, None, 'Square training crop; overrides the gin file.'),
    'num_steps': (flags.DEFINE_integer, None, 'Steps of the whole run (search_config / '
                  'train_config.total_steps, so the learning-rate schedule\'s length too); '
                  'overrides the gin file\'s steps or epochs. A rerun with a larger value '
                  'resumes and continues. The search\'s warm-up (arch_start_step) is unchanged.'),
    'dataset': (flags.DEFINE_string, None, 'Class names and palette of this dataset (cityscapes, '
                'voc, ade20k, synthetic).'),
    'model_name': (flags.DEFINE_string, 'autodeeplab', 'Model name (a directory of versions).'),
    'scales': (flags.DEFINE_list, None, 'Inference scales, e.g. 0.5,0.75,1,1.25,1.5,1.75.'),
    'flip': (flags.DEFINE_bool, None, 'Also average left-right flipped predictions.'),
    'precision': (flags.DEFINE_string, None, 'float32, bfloat16 or float16: what activations '
                  'compute in (float32 variables; float16 with a dynamic loss scale); overrides '
                  'runtime_options.precision in the gin files (default float32).'),
    'prediction_ids': (lambda name, default, help_text: flags.DEFINE_enum(
        name, default, ['train', 'dataset'], help_text), 'train', 'Label values of the written masks: train '
                       '(train ids, with colours and overlays) or dataset (the dataset\'s own ids, '
                       'e.g. Cityscapes labelIds for its benchmark server; masks only).'),
}


def define_flags(*names: str, **defaults) -> None:
  """Defines the shared flags `names` (and `defaults`' keys, with those defaults)."""
  for name in dict.fromkeys((*names, *defaults)):
    define, default, help_text = SHARED_FLAGS[name]
    define(name, defaults.get(name, default), help_text)


def positive_flag_bindings(flag_values, flag_to_binding: dict[str, str]) -> list[str]:
  """The flags given on the command line as gin bindings (applied after the gin files, so flags
  override them); each must be a positive integer."""
  bindings = []
  for flag, binding in flag_to_binding.items():
    value = getattr(flag_values, flag)
    if value is not None:
      if value < 1:
        raise UserInputError(f'--{flag}={value}: must be positive')
      bindings.append(f'{binding} = {value}')
  return bindings


def parse_scales(values: list[str]) -> list[float]:
  """--scales as positive numbers, or a one-line error naming the flag."""
  try:
    scales = [float(s) for s in values]
  except ValueError:
    scales = []
  if not scales or any(not math.isfinite(v) or v <= 0 for v in scales):
    raise UserInputError(f'--scales={",".join(values)}: expected positive numbers, e.g. '
                         '0.5,0.75,1,1.25,1.5,1.75')
  return scales


# Start-up lines of TensorFlow's C++ runtime that say nothing about this program's work.
NATIVE_NOISE = re.compile(
    rb'absl::InitializeLog\(\)|failed call to cuInit|cuda_platform\.cc|cudart_stub\.cc|'
    rb'Could not find cuda drivers|oneDNN custom operations are on|cpu_feature_guard\.cc|'
    rb'TF-TRT Warning|Unable to register cu(DNN|FFT|BLAS) factory|'
    rb'computation placer already registered|rebuild TensorFlow with the appropriate compiler|'
    rb'To enable the following instructions: ')


def filter_native_stderr() -> None:
  """Drops `NATIVE_NOISE` lines from file descriptor 2 (C++ and Python alike) for this process
  and its children; everything else is forwarded line by line."""
  if os.environ.get('AUTODEEPLAB_RAW_STDERR') == '1':
    return
  sys.stderr.flush()
  read_end, write_end = os.pipe()
  real_stderr = os.dup(2)
  os.dup2(write_end, 2)
  os.close(write_end)

  def pump():
    with os.fdopen(read_end, 'rb', buffering=0) as source:
      for line in iter(source.readline, b''):
        if not NATIVE_NOISE.search(line):
          os.write(real_stderr, line)

  thread = threading.Thread(target=pump, name='stderr-filter', daemon=True)
  thread.start()

  def restore():
    sys.stderr.flush()
    os.dup2(real_stderr, 2)  # closes the pipe's last write end of this process
    thread.join(timeout=5)

  atexit.register(restore)
  global _restore_stderr
  _restore_stderr = restore


def _restore_stderr() -> None:
  """Everything written to stderr so far forwarded (the filter's `restore` once installed): for
  an exit that skips atexit."""
  sys.stderr.flush()


def as_flag_error(message: str) -> str:
  """The library names settings ('model_size=X: ...'); where the binary has a flag of that name,
  the user set it there, so the line names the flag ('--model_size=X: ...')."""
  name = re.match(r'(\w+)=', message)
  if name and name.group(1) in flags.FLAGS:
    return '--' + message
  return message


class _DropDeprecations(logging.Filter):
  def filter(self, record):
    return 'deprecat' not in record.getMessage().lower()


# Flags that name files or directories: `~` is expanded at the edge (a shell leaves it alone
# after `--flag=`), so the library sees paths that open as they are.
PATH_FLAGS = ('workdir', 'tfrecord_dir', 'export_dir', 'output_dir', 'data_dir', 'sbd_dir',
              'tfds_data_dir', 'dataset_spec', 'save_predictions', 'saved_model', 'tflite',
              'genotype', 'gin_file', 'checkpoint', 'plot', 'history', 'input', 'output',
              'search_workdir', 'latency_table', 'onnx')


def expand_user_paths(flag_values=None) -> None:
  """`~` and `~user` expanded in every path flag given (comma lists of --input included)."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  for name in PATH_FLAGS:
    if name not in flag_values or not flag_values[name].present:
      continue
    value = flag_values[name].value
    if isinstance(value, str):
      expanded = ','.join(os.path.expanduser(v) for v in value.split(',')) if name == 'input' \
          else os.path.expanduser(value)
    elif isinstance(value, list):
      expanded = [os.path.expanduser(v) for v in value]
    else:
      continue
    if expanded != value:
      flag_values[name].value = expanded


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with an unknown, malformed or missing required flag as one
  `error: ...` line and exit code 2 (absl's own is a two-line FATAL and exit code 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).strip().splitlines()[0]
    required = re.match(r'flag --(\w+)=None: Flag --\w+ must have a value other than None', message)
    if required:
      message = f'--{required.group(1)} is required'
    print(f'error: {message} ({_program(argv)} --helpshort lists the flags)', file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _program(argv: list[str]) -> str:
  """How the user ran this binary: 'python -m tools.train' for tools/train.py."""
  path = argv[0] if argv else ''
  stem = os.path.splitext(os.path.basename(path))[0]
  if os.path.basename(os.path.dirname(os.path.abspath(path))) == __package__:
    return f'python -m {__package__}.{stem}'
  return os.path.basename(path) or 'the binary'


def run(main: Callable[[list[str]], None]) -> None:
  """absl.app.run with quiet TensorFlow start-up, turning UserInputError (and a flag absl
  cannot parse) into `error: ...` on stderr and exit code 2, and a preempted run (SIGTERM or
  SIGINT, checkpointed) into its message and exit code 143 or 130."""
  filter_native_stderr()

  def wrapped(argv):
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    absl_logging.get_absl_handler().addFilter(_DropDeprecations())
    try:
      expand_user_paths()
      main(argv)
    except Preempted as e:
      print(e, flush=True)
      sys.exit(e.exit_code)
    except PeerLost as e:
      # At once: TensorFlow's own shutdown would wait for the lost peer (its shutdown barrier).
      print(f'error: {e}', file=sys.stderr, flush=True)
      sys.stdout.flush()
      _restore_stderr()
      os._exit(e.exit_code)  # pylint: disable=protected-access
    except UserInputError as e:
      # The first line: gin appends the configurable it was calling on lines of its own.
      print(f'error: {as_flag_error(str(e).strip().splitlines()[0])}', file=sys.stderr)
      # Nothing after the one line: no warnings from objects torn down on the way out.
      absl_logging.set_verbosity(absl_logging.FATAL)
      logging.getLogger('tensorflow').setLevel(logging.CRITICAL)
      sys.exit(EXIT_BAD_INPUT)

  try:
    app.run(wrapped, flags_parser=_parse_flags)
  except KeyboardInterrupt:  # Ctrl-C outside a training loop (which checkpoints and exits 130)
    print('interrupted', file=sys.stderr)
    sys.exit(128 + signal.SIGINT)


def run_stage(tool: str, *args: str, caller: str = 'pipeline') -> None:
  """Runs one binary exactly as a user would (tools.pipeline, tools.baseline); a failing stage
  stops the caller. On Ctrl-C (which the stage receives too, and answers by checkpointing) it
  waits for the stage, then exits 130."""
  module = f'{__package__}.{tool}'  # tools.X in a checkout, autodeeplab_tools.X installed
  print(f'[{caller}] python -m {module} {shlex.join(args)}', flush=True)
  child = subprocess.Popen([sys.executable, '-m', module, *args])
  try:
    returncode = child.wait()
  except KeyboardInterrupt:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the stage
    child.wait()
    print(f'[{caller}] interrupted during {module}; rerun to resume', flush=True)
    sys.exit(128 + signal.SIGINT)
  if returncode:
    raise UserInputError(f'stage {module} failed with exit code {returncode}')


def serving_command(model_dir: str, model_name: str) -> str:
  """The `docker run` line that serves `model_dir` (a directory of versions) with TF Serving,
  its absolute path quoted for the shell (relative, `~` or spaces alike)."""
  volume = shlex.quote(f'{os.path.abspath(model_dir)}:/models/{model_name}')
  return (f'docker run -p 8501:8501 -v {volume} -e MODEL_NAME={model_name} tensorflow/serving')


def venv_command(name: str) -> str:
  """How to call console script `name` installed beside this Python: its bare name when the
  shell finds that one (an activated venv), else its path (`.venv/bin/tensorboard`)."""
  import shutil
  here = os.path.join(os.path.dirname(sys.executable), name)
  if not os.path.exists(here) or shutil.which(name) == here:
    return name
  relative = os.path.relpath(here)
  return shlex.quote(here if relative.startswith('..') else relative)


def eval_is_current(eval_path: str, train_dir: str) -> bool:
  """eval.json exists and scores the training workdir's latest checkpoint."""
  state = os.path.join(train_dir, 'checkpoints', 'checkpoint')
  if not (os.path.exists(eval_path) and os.path.exists(state)):
    return False
  with open(eval_path) as f, open(state) as g:
    checkpoint = os.path.basename(json.load(f).get('checkpoint', ''))
    return f'model_checkpoint_path: "{checkpoint}"' in g.read()
