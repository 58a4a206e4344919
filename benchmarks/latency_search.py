r"""Does the latency term reach a budget? A proxy search aimed at a measured latency target; one
JSON line (issue "latency-aware search" targets).

  python benchmarks/latency_search.py [--workdir=runs/latency_search] [--weights=1,10,100] \
      [--target_fraction=0.6] [--num_threads=2]

On the proxy task (benchmarks/search_trust.py's data and gins), every stage by its binary:
1. a LiteRT float32 latency table at F=8, 129x129, the proxy's 5 classes (`tools.latency`; at
   F=4 and 65 px an invoke is mostly overhead);
2. the seed-0 search without a cost term; its genotype's predicted latency P;
3. the same search with the table, `cost_target` = target_fraction x P and each `cost_weight` of
   `--weights` (a hinge cannot promise the target: each weight's result is reported);
4. every decoded genotype's whole network converted as tools.export does and timed on the same
   engine (interleaved rounds), against the target;
5. the unconstrained genotype and the first weighted one that meets 1.1 x the target (else the
   last) retrained on the proxy: their mIoU side by side.
Rerunning resumes: every stage skips what its workdir already holds.
"""
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import search_trust  # noqa: E402  (its flags: --workdir is this one's too)

flags.DEFINE_list('weights', ['1', '10', '100'], 'cost_weight values to try.')
flags.DEFINE_float('target_fraction', 0.6, 'The target as a fraction of the unconstrained '
                   'genotype\'s predicted latency.')
flags.DEFINE_integer('num_threads', 2, 'LiteRT threads.')
FLAGS = flags.FLAGS
FILTER_MULTIPLIER, INPUT_SIZE, NUM_CLASSES = 8, (129, 129), 5


def main(argv):
  del argv
  work = FLAGS.workdir if FLAGS['workdir'].present else 'runs/latency_search'
  data = search_trust.proxy_data(work)
  table_path = os.path.join(work, 'latency_table.json')
  search_trust.tool('latency', '--engine=litert', f'--num_threads={FLAGS.num_threads}',
                    f'--input_size={INPUT_SIZE[0]},{INPUT_SIZE[1]}',
                    f'--filter_multiplier={FILTER_MULTIPLIER}', f'--num_classes={NUM_CLASSES}',
                    f'--output={table_path}')
  from official.autodeeplab import launch
  launch.start('inference', strategy=None)
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search import cost
  from official.autodeeplab.search.genotype import Genotype
  from official.autodeeplab.serving import latency
  model = cost.Latency.from_file(table_path)
  plain_path = search_trust.searched(os.path.join(work, 'search-plain'), data, 0)
  plain = Genotype.from_json(plain_path)
  target = FLAGS.target_fraction * model.exact(plain)
  runs = {'plain': plain_path}
  for weight in FLAGS.weights:
    runs[f'weight-{weight}'] = search_trust.searched(
        os.path.join(work, f'search-weight-{weight}'), data, 0,
        f'search_config.latency_table = "{table_path}"', f'search_config.cost_weight = {weight}',
        f'search_config.cost_target = {target:.4f}')
  setting = latency.Setting(input_size=INPUT_SIZE, filter_multiplier=FILTER_MULTIPLIER,
                            num_classes=NUM_CLASSES, num_threads=FLAGS.num_threads)
  timer = latency.Timer(setting)
  genotypes = {name: Genotype.from_json(path) for name, path in runs.items()}
  calls = {name: latency.measure_network(segmenter.build_segmenter(
      g, NUM_CLASSES, filter_multiplier=FILTER_MULTIPLIER), setting, timer)
      for name, g in genotypes.items()}
  measured = timer.measure(calls)
  results = {name: {'genotype': g.to_dict(), 'predicted_ms': round(model.exact(g), 3),
                    'measured_ms': round(measured[name], 3),
                    'measured_over_target': round(measured[name] / target, 3)}
             for name, g in genotypes.items()}
  weighted = [f'weight-{w}' for w in FLAGS.weights]
  chosen = next((n for n in weighted if results[n]['measured_over_target'] <= 1.1), weighted[-1])
  for name in ('plain', chosen):
    results[name]['miou'] = search_trust.retrained_miou(
        os.path.join(work, f'retrain-{name}'), data, runs[name], 0)
  print(json.dumps({'benchmark': 'latency_search', 'device': latency.describe_device('litert'),
                    'num_threads': FLAGS.num_threads, 'table': f'F={FILTER_MULTIPLIER}, '
                    f'{INPUT_SIZE[0]}x{INPUT_SIZE[1]}, {NUM_CLASSES} classes, LiteRT float32',
                    'target_ms': round(target, 3), 'chosen': chosen, 'runs': results}))


if __name__ == '__main__':
  app.run(main)
