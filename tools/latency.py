r"""Measures a latency table: what each part of the retrain network costs on one inference engine,
for one deployment setting, so a search can aim at a latency budget on that device.

  python -m tools.latency --engine=litert --num_threads=4 [--quantize=none|float16|int8] \
      --input_size=513,513 --model_size=S --num_classes=19 --output=latency_table.json
  python -m tools.latency --engine=tensorflow [--precision=float32|bfloat16|float16] \
      --input_size=1024,2048 --filter_multiplier=20 --num_classes=19 --output=gpu_table.json

Run it on the device you deploy on (a phone's CPU through LiteRT's interpreter with XNNPACK, a
server's GPU through TensorFlow), copy the JSON to the machine that searches, and bind it:
`--gin_bindings='search_config.latency_table="latency_table.json"'` with `cost_weight` and a
`cost_target` in milliseconds. What is predicted is the model as `tools.export` writes it for that
engine (the uint8 input and its normalisation, the final upsampling; TensorFlow: the argmax too),
one call's fixed overhead counted once. The table lists the setting and the device it was measured
on; `search/latency_table.py` says what each entry is. Entries are written atomically as they are
measured: rerunning the same command resumes an interrupted table.
"""
from __future__ import annotations

import os

from absl import flags

from official.autodeeplab import launch
from official.autodeeplab.modeling import sizes
from . import common

FLAGS = flags.FLAGS
common.define_flags('filter_multiplier', 'precision', model_size='S', num_classes=19)
flags.DEFINE_string('engine', 'litert', 'litert (LiteRT\'s interpreter with XNNPACK on the CPU) '
                    'or tensorflow (on the device it finds: a GPU when there is one).')
flags.DEFINE_integer('num_threads', 2, '--engine=litert: the interpreter\'s CPU threads.')
flags.DEFINE_string('quantize', 'none', '--engine=litert: none, float16 or int8, as '
                    'tools.export --format=tflite takes it.')
flags.DEFINE_string('input_size', '513,513', 'HEIGHT,WIDTH of the deployed model\'s input.')
flags.DEFINE_string('output', 'latency_table.json', 'Where the table is written (JSON).')
flags.DEFINE_integer('repeats', 15, 'Timed calls per part and round (their median is taken).')
flags.DEFINE_integer('rounds', 3, 'Rounds over the parts, apart in time (the smallest median).')
flags.DEFINE_integer('warmup', 3, 'Untimed calls before each round\'s timed calls.')


def main(argv):
  del argv
  from official.autodeeplab.search import latency_table
  from official.autodeeplab.serving import tflite
  if FLAGS.engine not in latency_table.ENGINES:
    raise common.UserInputError(f'--engine={FLAGS.engine}: expected one of '
                                f'{", ".join(latency_table.ENGINES)}')
  if FLAGS.num_threads < 1:
    raise common.UserInputError(f'--num_threads={FLAGS.num_threads}: must be at least 1')
  if FLAGS.quantize not in tflite.QUANTIZATIONS:
    raise common.UserInputError(f'--quantize={FLAGS.quantize}: expected one of '
                                f'{", ".join(tflite.QUANTIZATIONS)}')
  if FLAGS.engine == 'tensorflow' and FLAGS.quantize != 'none':
    raise common.UserInputError('--quantize is for --engine=litert; TensorFlow takes --precision')
  if FLAGS.engine == 'litert' and FLAGS.precision not in (None, 'float32'):
    raise common.UserInputError('--precision is for --engine=tensorflow; LiteRT takes --quantize')
  for name in ('repeats', 'rounds', 'num_classes'):
    if getattr(FLAGS, name) < 1:
      raise common.UserInputError(f'--{name}={getattr(FLAGS, name)}: must be at least 1')
  if FLAGS.warmup < 0:
    raise common.UserInputError(f'--warmup={FLAGS.warmup}: must be 0 or more')
  height, width = sizes.parse_image_size(FLAGS.input_size, '--input_size')
  multiplier = sizes.resolve_filter_multiplier(FLAGS.model_size, FLAGS.filter_multiplier)
  if os.path.isdir(FLAGS.output):
    raise common.UserInputError(f'--output={FLAGS.output}: is a directory; expected a JSON file')
  process = launch.start('inference', strategy=None, precision=FLAGS.precision)
  from official.autodeeplab.serving import latency
  setting = latency.Setting(
      engine=FLAGS.engine, input_size=(height, width), filter_multiplier=multiplier,
      num_classes=FLAGS.num_classes, num_threads=FLAGS.num_threads, quantize=FLAGS.quantize,
      precision=process.runtime.precision)
  print(f'[latency] {latency_table.describe_setting(setting.measured_for(""))} on '
        f'{latency.describe_device(FLAGS.engine)}: {len(latency_table.parts())} parts, '
        f'{FLAGS.rounds} rounds of {FLAGS.repeats} timed calls each -> {FLAGS.output}',
        flush=True)
  table = latency.measure_table(setting, FLAGS.output, FLAGS.warmup, FLAGS.repeats, FLAGS.rounds)
  from official.autodeeplab.search import cost
  from official.autodeeplab.search import genotype as genotype_lib
  paper = genotype_lib.load('paper')
  print(f'[latency] table written to {FLAGS.output}; the paper\'s genotype is predicted at '
        f'{cost.Latency(table).exact(paper):.2f} ms (tools.describe --genotype=paper '
        f'--latency_table={FLAGS.output})')


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
