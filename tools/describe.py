r"""Prints the search space's size, a genotype's cell and path, and a retrain model's size.

  python -m tools.describe --space [--num_layers=12] [--num_blocks=5] [--json]
  python -m tools.describe --genotype=paper|PATH.json [--plot=architecture.png] [--json]
  python -m tools.describe --genotype=paper --model_size=S|M|L [--filter_multiplier=N] \
      --num_classes=19 --image_size=1024,2048 [--json]
  python -m tools.describe --genotype=paper|PATH.json --latency_table=latency_table.json [--json]
  python -m tools.describe --workdir=runs/search [--plot=PNG] [--history=PNG] [--json]

With --workdir, the architecture a search workdir's latest checkpoint holds is decoded (cell and
Viterbi path) without training, written to `--plot` if given; `--history` draws how the decoded
path and cell changed over the search's exports (arch_history.jsonl). With a model size, `params` (trainable parameters) and `multiply_adds` (convolutions, exact
logical shapes; see utils/complexity.py) are printed with a per-component breakdown, and
`multiply_adds_tf_profiler` (TensorFlow's own profiler, the convention of the paper's era).
With --latency_table (measured by tools.latency), `predicted_latency_ms` is the genotype's
latency on the table's engine, at the table's input size, F and classes (no other flag needed),
with its parts under `breakdown.latency_ms`; a search workdir with a table reports
`expected_latency_ms` (under the relaxation).
"""
from __future__ import annotations

import json

from absl import flags

from official.autodeeplab import launch
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from . import common

FLAGS = flags.FLAGS
flags.DEFINE_bool('space', False, 'Print the size of the search space.')
flags.DEFINE_integer('num_layers', space.NUM_LAYERS, 'Layers L of the trellis (for --space).')
flags.DEFINE_integer('num_blocks', space.NUM_BLOCKS, 'Blocks B per cell (for --space).')
flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
# --genotype to describe ("paper" or a file); --model_size / --filter_multiplier: count the retrain
# model built from it, with --num_classes; --workdir: a tools.search workdir, decoded from its
# latest checkpoint.
common.define_flags('genotype', 'model_size', 'filter_multiplier', 'workdir', genotype=None,
                    num_classes=19)
# Not the shared --image_size (the synthetic images' side): here the size multiply-adds count at.
flags.DEFINE_string('image_size', '1024,2048', 'HEIGHT,WIDTH for multiply-adds.')
flags.DEFINE_string('plot', None, 'With --genotype or --workdir: write the architecture plot '
                    '(PNG) here.')
flags.DEFINE_string('latency_table', None, 'With --genotype: predict its latency from this table '
                    '(tools.latency), at the table\'s input size, F and classes.')
flags.DEFINE_string('history', None, 'With --workdir: draw how the decoded architecture changed '
                    'over the exports (PNG) here.')


def _model_report(geno) -> tuple[dict, list[str]]:
  height, width = sizes.parse_image_size(FLAGS.image_size)
  multiplier = sizes.resolve_filter_multiplier(FLAGS.model_size, FLAGS.filter_multiplier)
  from official.autodeeplab.modeling import segmenter  # TensorFlow only after the flags are valid
  from official.autodeeplab.utils import complexity
  model = segmenter.build_segmenter(geno, FLAGS.num_classes, filter_multiplier=multiplier)
  params = complexity.parameters_by_component(model)
  madds = complexity.multiply_adds(model, height, width)
  report = {
      'model_size': FLAGS.model_size if FLAGS.filter_multiplier is None else None,
      'filter_multiplier': multiplier, 'num_classes': FLAGS.num_classes,
      'image_size': [height, width],
      'params': complexity.count_parameters(model),
      'multiply_adds': madds['total'],
      'multiply_adds_tf_profiler': complexity.tf_profiler_multiply_adds(model, height, width),
      'breakdown': {'params': params,
                    'multiply_adds': {k: v for k, v in madds.items() if k != 'total'}},
  }
  text = [f'retrain model: F={multiplier}, {FLAGS.num_classes} classes, {height}x{width} input',
          f'  params:        {report["params"] / 1e6:.2f}M',
          f'  multiply-adds: {report["multiply_adds"] / 1e9:.2f}B (exact conv count; TF '
          f'profiler: {report["multiply_adds_tf_profiler"] / 1e9:.2f}B)',
          '  component   params      multiply-adds']
  for name in params:
    text.append(f'  {name:<10} {params[name] / 1e6:7.2f}M  {madds.get(name, 0) / 1e9:10.2f}B')
  return report, text


def _latency_report(geno) -> tuple[dict, list[str]]:
  """--latency_table: the genotype's predicted latency and its parts."""
  from official.autodeeplab.search import cost
  from official.autodeeplab.search import latency_table
  latency = cost.Latency.from_file(FLAGS.latency_table)
  setting = latency.setting
  expected = {'num_blocks': geno.num_blocks}
  if FLAGS.model_size is not None or FLAGS.filter_multiplier is not None:
    expected['filter_multiplier'] = sizes.resolve_filter_multiplier(FLAGS.model_size,
                                                                   FLAGS.filter_multiplier)
  if FLAGS['num_classes'].present:
    expected['num_classes'] = FLAGS.num_classes
  latency_table.check_matches(latency.table, FLAGS.latency_table, 'this genotype', **expected)
  breakdown = latency.breakdown(geno)
  total = sum(breakdown.values())
  report = {'predicted_latency_ms': total, 'latency_table': FLAGS.latency_table,
            'latency_measured_for': setting, 'breakdown': {'latency_ms': breakdown}}
  text = [f'predicted latency: {total:.2f} ms on {latency_table.describe_setting(setting)} '
          f'({setting.get("device")})',
          '  ' + ', '.join(f'{name} {value:.2f}' for name, value in breakdown.items())]
  return report, text


def _history(report: dict, text: list[str]) -> None:
  """--history: the workdir's exports, drawn, and counted in the report."""
  from official.autodeeplab.training import arch_history
  from official.autodeeplab.training import plots
  records = arch_history.read(FLAGS.workdir)
  if not records:
    raise common.UserInputError(f'--history: {FLAGS.workdir} has no {arch_history.HISTORY_FILE} '
                                '(the search writes one record per export)')
  plots.plot_history(records, FLAGS.history, title=f'{FLAGS.workdir}: {len(records)} exports')
  changes = sum(a['genotype'] != b['genotype'] for a, b in zip(records, records[1:]))
  report.update({'history': FLAGS.history, 'exports': len(records), 'changes': changes})
  text.append(f'history of {len(records)} exports (steps {records[0]["step"]}-'
              f'{records[-1]["step"]}, the decoded architecture changed {changes} times) '
              f'drawn to {FLAGS.history}')
  curve = arch_history.sharpness_curve(records)
  if curve:  # search_config.track_sharpness
    report['dominant_eigenvalue'] = curve
    text.append('dominant eigenvalue of the architecture Hessian (step: value): ' +
                ', '.join(f'{p["step"]}: {p["value"]:.4g}' for p in curve))


def main(argv):
  del argv
  if not FLAGS.space and not FLAGS.genotype and not FLAGS.workdir:
    raise common.UserInputError('nothing to describe: pass --space, --genotype=paper|PATH or '
                                '--workdir=SEARCH_WORKDIR')
  if FLAGS.genotype and FLAGS.workdir:
    raise common.UserInputError('pass --genotype or --workdir, not both')
  if FLAGS.latency_table and not FLAGS.genotype:
    raise common.UserInputError('--latency_table needs --genotype=paper|PATH (a search workdir '
                                'with a table reports its expected latency by itself)')
  if FLAGS.history and not FLAGS.workdir:
    raise common.UserInputError('--history needs --workdir=SEARCH_WORKDIR')
  if FLAGS.num_layers < 1 or FLAGS.num_blocks < 1:
    raise common.UserInputError('--num_layers and --num_blocks must be positive')
  sized = FLAGS.model_size is not None or FLAGS.filter_multiplier is not None
  if sized:
    sizes.resolve_filter_multiplier(FLAGS.model_size, FLAGS.filter_multiplier)
    sizes.parse_image_size(FLAGS.image_size)
  if FLAGS.workdir or sized:
    launch.start('inference', strategy=None)  # a model is built: TensorFlow set up first
  report = {}
  text = []
  if FLAGS.space:
    counts = space.describe_space(FLAGS.num_layers, FLAGS.num_blocks)
    report.update(counts)
    text += [
        f'search space: L={counts["num_layers"]} layers, B={counts["num_blocks"]} blocks, '
        f'{counts["num_ops"]} ops, {counts["num_levels"]} levels (strides 4..32)',
        f'  ops: {", ".join(counts["primitives"])}',
        f'  cells:  {counts["num_cells"]:,} ({counts["num_cells"]:.2e})',
        f'  paths:  {counts["num_paths_first_stride4"]:,} with the first layer at stride 4; '
        f'{counts["num_paths_first_stride4_or_8"]:,} at stride 4 or 8',
        f'  joint:  {counts["joint_space_first_stride4"]:.2e} (cells x paths from stride 4)',
    ]
  if FLAGS.genotype or FLAGS.workdir:
    transitions = None
    if FLAGS.workdir:
      from official.autodeeplab.training import search_outputs
      geno, transitions, step, expected, expected_ms = search_outputs.decode_checkpoint(
          FLAGS.workdir)
      source = f'{FLAGS.workdir} at search step {step}'
      report.update(step=step, expected_multiply_adds=expected)
      text.append(f'expected multiply-adds of the retrained cells (F=20, 1024x2048, under the '
                  f'relaxation): {expected / 1e9:.2f}B')
      if expected_ms is not None:
        report['expected_latency_ms'] = expected_ms
        text.append(f'expected latency (its latency_table.json, under the relaxation): '
                    f'{expected_ms:.2f} ms')
    else:
      geno, source = genotype_lib.load(FLAGS.genotype), FLAGS.genotype
    report['genotype'] = geno.to_dict()
    text.append(f'genotype {source}:')
    text.append(geno.describe())
    if FLAGS.history:
      _history(report, text)
    if FLAGS.plot:
      from official.autodeeplab.training import plots
      report['plot'] = plots.plot_architecture(geno, FLAGS.plot, transitions, title=source)
      text.append(f'architecture plot written to {FLAGS.plot}')
    if FLAGS.model_size is not None or FLAGS.filter_multiplier is not None:
      model_report, model_text = _model_report(geno)
      report.update(model_report)
      text += model_text
    if FLAGS.latency_table:
      latency_report, latency_text = _latency_report(geno)
      breakdown = latency_report.pop('breakdown')
      report.setdefault('breakdown', {}).update(breakdown)
      report.update(latency_report)
      text += latency_text
  elif FLAGS.model_size is not None or FLAGS.filter_multiplier is not None:
    raise common.UserInputError('--model_size/--filter_multiplier need --genotype=paper|PATH')
  print(json.dumps(report) if FLAGS.json else '\n'.join(text))


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
