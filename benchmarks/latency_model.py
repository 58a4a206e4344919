r"""Does a latency table predict whole networks? Predicted against measured latency on random
architectures; one JSON line.

  python benchmarks/latency_model.py [--filter_multiplier=20 --input_size=129,129] \
      [--num_random=24] [--num_threads=2] [--rounds=5] [--workdir=runs/latency_model] [--s_point]

The defaults (Auto-DeepLab-S's width at 129x129, 5 timing rounds) run in about 8 minutes on 2
cores; at F=8 the stem and decoder, which no architecture changes, are most of every network and
the differences between architectures shrink to the timing noise (docs/performance.md).

Measures (or resumes) a latency table with tools.latency's code at the setting, draws
`--num_random` genotypes uniformly from the space (search/sampling.py, paths from level 0 or 1)
plus the paper's, converts each whole network as tools.export does, and times it on the same
engine the same way (rounds of medians, interleaved over the networks so a slow period of a shared
machine is spread over all of them). Prints the Spearman rank correlation and the median absolute
percentage error of predicted against measured latency, and beside them the Spearman correlation
of the cells' multiply-adds against measured latency. `--s_point`: the same for Auto-DeepLab-S
(the paper's genotype, F=20) at 513x513, its table's build time included.
"""
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer('filter_multiplier', 20, 'F of the random networks (20: S).')
flags.DEFINE_string('input_size', '129,129', 'HEIGHT,WIDTH of their input.')
flags.DEFINE_integer('num_classes', 19, 'Classes.')
flags.DEFINE_integer('num_random', 24, 'Random genotypes (the paper\'s is added).')
flags.DEFINE_integer('num_threads', 2, 'LiteRT threads.')
flags.DEFINE_string('quantize', 'none', 'none, float16 or int8.')
flags.DEFINE_integer('seed', 0, 'Seed of the draws.')
flags.DEFINE_string('workdir', 'runs/latency_model', 'Where the tables are kept (resumable).')
flags.DEFINE_integer('rounds', 5, 'Timing rounds (tools.latency --rounds), table and networks.')
flags.DEFINE_integer('repeats', 15, 'Timed calls per round.')
flags.DEFINE_bool('s_point', False, 'Also Auto-DeepLab-S at 513x513 (table and paper network).')
FLAGS = flags.FLAGS


def study(setting, genotypes, table_path: str) -> dict:
  import numpy as np
  from scipy import stats
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search import cost
  from official.autodeeplab.serving import latency
  start = time.perf_counter()
  table = latency.measure_table(setting, table_path, repeats=FLAGS.repeats, rounds=FLAGS.rounds,
                                progress=False)
  table_s = time.perf_counter() - start
  model = cost.Latency(table)
  timer = latency.Timer(setting, repeats=FLAGS.repeats, rounds=FLAGS.rounds)
  start = time.perf_counter()
  calls = {}
  for i, genotype in enumerate(genotypes):
    network = segmenter.build_segmenter(genotype, setting.num_classes,
                                        filter_multiplier=setting.filter_multiplier)
    calls[i] = latency.measure_network(network, setting, timer)
  convert_s = time.perf_counter() - start
  measured = timer.measure(calls)
  measured = np.array([measured[i] for i in range(len(genotypes))])
  predicted = np.array([model.exact(g) for g in genotypes])
  madds = np.array([cost.cells_multiply_adds(g, setting.filter_multiplier, *setting.input_size)
                    for g in genotypes])
  errors = np.abs(predicted - measured) / measured
  result = {'networks': len(genotypes), 'table_build_s': round(table_s, 1),
            'networks_convert_s': round(convert_s, 1),
            'measured_ms': [round(float(x), 3) for x in measured],
            'predicted_ms': [round(float(x), 3) for x in predicted],
            'median_abs_pct_error': round(100 * float(np.median(errors)), 2),
            'max_abs_pct_error': round(100 * float(np.max(errors)), 2),
            'paper_predicted_ms': round(float(predicted[0]), 3),
            'paper_measured_ms': round(float(measured[0]), 3)}
  if len(genotypes) > 2:
    result['spearman'] = round(float(stats.spearmanr(predicted, measured)[0]), 4)
    result['multiply_adds_spearman'] = round(float(stats.spearmanr(madds, measured)[0]), 4)
  return result


def main(argv):
  del argv
  import numpy as np
  from official.autodeeplab import launch
  from official.autodeeplab.modeling import sizes
  launch.start('inference', strategy=None)
  from official.autodeeplab.search import sampling
  from official.autodeeplab.search import space
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.serving import latency
  os.makedirs(FLAGS.workdir, exist_ok=True)
  size = sizes.parse_image_size(FLAGS.input_size, '--input_size')
  setting = latency.Setting(input_size=size, filter_multiplier=FLAGS.filter_multiplier,
                            num_classes=FLAGS.num_classes, num_threads=FLAGS.num_threads,
                            quantize=FLAGS.quantize)
  rng = np.random.default_rng(FLAGS.seed)
  genotypes = [PAPER_GENOTYPE] + [sampling.random_genotype(rng, first_levels=space.FIRST_LEVELS)
                                  for _ in range(FLAGS.num_random)]
  name = (f'F{FLAGS.filter_multiplier}_{size[0]}x{size[1]}_{FLAGS.num_threads}t_{FLAGS.quantize}'
          f'_{FLAGS.rounds}r')
  report = {'benchmark': 'latency_model', 'engine': 'litert', 'num_threads': FLAGS.num_threads,
            'quantize': FLAGS.quantize, 'device': latency.describe_device('litert'),
            'filter_multiplier': FLAGS.filter_multiplier, 'input_size': list(size),
            'rounds': FLAGS.rounds, 'repeats': FLAGS.repeats,
            'random': study(setting, genotypes,
                            os.path.join(FLAGS.workdir, f'table_{name}.json'))}
  if FLAGS.s_point:
    s_setting = latency.Setting(input_size=(513, 513), filter_multiplier=20,
                                num_classes=FLAGS.num_classes, num_threads=FLAGS.num_threads,
                                quantize=FLAGS.quantize)
    report['s_513'] = study(s_setting, [PAPER_GENOTYPE], os.path.join(
        FLAGS.workdir, f'table_F20_513x513_{FLAGS.num_threads}t_{FLAGS.quantize}_{FLAGS.rounds}r.json'))
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
