r"""Does the latency term reach a budget? A proxy search aimed at a measured latency target; one
JSON line (issue "latency-aware search" targets).

  python benchmarks/latency_search.py [--workdir=runs/latency_search] [--weights=1,10,100] \
      [--target_fractions=0.6,0.9] [--num_threads=2]

On the proxy task (benchmarks/search_trust.py's data and gins), every stage by its binary:
1. a LiteRT float32 latency table at F=8, 129x129, the proxy's 5 classes (`tools.latency`; at
   F=4 and 65 px an invoke is mostly overhead);
2. the seed-0 search without a cost term; its genotype's predicted latency P;
3. the same search with the table, `cost_target` = f x P for each f of `--target_fractions` and
   each `cost_weight` of `--weights` (a hinge cannot promise the target: each result is
   reported), beside the floor: the lowest predicted latency of 20,000 random genotypes of the
   same space (the stem, ASPP and decoder do not depend on the cells);
4. every decoded genotype's whole network converted as tools.export does and timed on the same
   engine (interleaved rounds), against the target;
5. the unconstrained genotype and, per target, the first weighted one that meets 1.1 x the target
   (else the last) retrained on the proxy: their mIoU side by side.
`--long_total_steps`: per target, the largest weight again in a longer search (more architecture
steps), since 20 Adam steps move alpha and beta by little.
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
flags.DEFINE_list('target_fractions', ['0.6', '0.9'], 'Targets as fractions of the '
                  'unconstrained genotype\'s predicted latency.')
flags.DEFINE_integer('num_threads', 2, 'LiteRT threads.')
flags.DEFINE_integer('long_total_steps', 100, 'Also, per target, the largest weight in a search '
                     'of this many steps (the proxy\'s 40 give 20 architecture steps); 0: not.')
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
  import numpy as np
  from official.autodeeplab.search import sampling
  rng = np.random.default_rng(0)
  floor = min(model.exact(sampling.random_genotype(rng, plain.num_layers, plain.num_blocks,
                                                   (plain.path[0],))) for _ in range(20000))
  runs, targets = {'plain': plain_path}, {}
  for fraction in FLAGS.target_fractions:
    target = float(fraction) * model.exact(plain)
    for weight in FLAGS.weights:
      name = f'target{fraction}-weight{weight}'
      targets[name] = target
      runs[name] = search_trust.searched(
          os.path.join(work, f'search-{name}'), data, 0,
          f'search_config.latency_table = "{table_path}"', f'search_config.cost_weight = {weight}',
          f'search_config.cost_target = {target:.4f}')
    if FLAGS.long_total_steps:
      name = f'target{fraction}-weight{FLAGS.weights[-1]}-steps{FLAGS.long_total_steps}'
      targets[name] = target
      runs[name] = search_trust.searched(
          os.path.join(work, f'search-{name}'), data, 0,
          f'search_config.latency_table = "{table_path}"',
          f'search_config.cost_weight = {FLAGS.weights[-1]}',
          f'search_config.cost_target = {target:.4f}',
          f'search_config.total_steps = {FLAGS.long_total_steps}')
  setting = latency.Setting(input_size=INPUT_SIZE, filter_multiplier=FILTER_MULTIPLIER,
                            num_classes=NUM_CLASSES, num_threads=FLAGS.num_threads)
  timer = latency.Timer(setting)
  genotypes = {name: Genotype.from_json(path) for name, path in runs.items()}
  calls = {name: latency.measure_network(segmenter.build_segmenter(
      g, NUM_CLASSES, filter_multiplier=FILTER_MULTIPLIER), setting, timer)
      for name, g in genotypes.items()}
  measured = timer.measure(calls)
  results = {name: {'genotype': g.to_dict(), 'predicted_ms': round(model.exact(g), 3),
                    'measured_ms': round(measured[name], 3)}
             for name, g in genotypes.items()}
  for name, target in targets.items():
    results[name].update(target_ms=round(target, 3),
                         measured_over_target=round(measured[name] / target, 3))
  retrained = ['plain']
  for fraction in FLAGS.target_fractions:
    weighted = [n for n in targets if n.startswith(f'target{fraction}-')]
    retrained.append(next((n for n in weighted if results[n]['measured_over_target'] <= 1.1),
                          weighted[-1]))
  for name in dict.fromkeys(retrained):
    results[name]['miou'] = search_trust.retrained_miou(
        os.path.join(work, f'retrain-{name}'), data, runs[name], 0)
  print(json.dumps({'benchmark': 'latency_search', 'device': latency.describe_device('litert'),
                    'num_threads': FLAGS.num_threads, 'table': f'F={FILTER_MULTIPLIER}, '
                    f'{INPUT_SIZE[0]}x{INPUT_SIZE[1]}, {NUM_CLASSES} classes, LiteRT float32',
                    'floor_of_20000_random_ms': round(floor, 3),
                    'plain_predicted_ms': results['plain']['predicted_ms'],
                    'retrained': retrained, 'runs': results}))


if __name__ == '__main__':
  app.run(main)
