r"""Can the search be trusted on the proxy task? One JSON line (issue "search trust" targets).

  python benchmarks/search_trust.py [--workdir=runs/search_trust] [--num_random=8] \
      [--search_seeds=0,1,2] [--cost_weight=10]

On the proxy task (experiments/search/proxy.gin, experiments/retrain/proxy.gin: the quickstart's
synthetic data and budget), every stage run by its binary:
1. one search per seed in `search_seeds`; each found genotype is a "given" one;
2. `tools.baseline` with those genotypes and `num_random` random ones of the same space, all
   retrained and evaluated alike (seed 0): each searched genotype's percentile among the random
   ones, and the spread of mIoU over random architectures (the minutes it took);
3. the first searched genotype retrained at two more seeds: the spread of mIoU over seeds of one
   architecture (architectures differ on the proxy when 2's spread exceeds 3's);
4. the seed-0 search again with `search_config.cost_weight` and a target at half of the found
   genotype's cells' multiply-adds (S, 1024x2048): the decoded genotype's multiply-adds against
   the cost-free one, and its proxy mIoU (retrained like the others).
Rerunning resumes: every stage skips what its workdir already holds.
"""
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string('workdir', 'runs/search_trust', 'Where everything is written.')
flags.DEFINE_integer('num_random', 8, 'Random genotypes in the baseline.')
flags.DEFINE_list('search_seeds', ['0', '1', '2'], 'Seeds of the searches.')
flags.DEFINE_float('cost_weight', 10.0, 'search_config.cost_weight of the cost run.')
FLAGS = flags.FLAGS
SEARCH_GIN = 'experiments/search/proxy.gin'
RETRAIN_GIN = 'experiments/retrain/proxy.gin'


def tool(name: str, *args: str) -> str:
  """Runs a binary; its stdout (a failure stops the benchmark with the binary's stderr)."""
  result = subprocess.run([sys.executable, '-m', f'tools.{name}', *args], capture_output=True,
                          text=True)
  if result.returncode:
    sys.exit(f'tools.{name} {" ".join(args)} failed:\n{result.stderr[-3000:]}')
  return result.stdout


def searched(workdir: str, data: str, seed: int, *bindings: str) -> str:
  genotype = os.path.join(workdir, 'genotype.json')
  if not os.path.exists(genotype):
    tool('search', f'--workdir={workdir}', f'--tfrecord_dir={data}', f'--gin_file={SEARCH_GIN}',
         f'--seed={seed}', *[f'--gin_bindings={b}' for b in bindings])
  return genotype


def retrained_miou(workdir: str, data: str, genotype: str, seed: int) -> float:
  eval_path = os.path.join(workdir, 'eval.json')
  if not os.path.exists(eval_path):
    tool('train', f'--workdir={workdir}', f'--tfrecord_dir={data}', f'--genotype={genotype}',
         f'--gin_file={RETRAIN_GIN}', f'--seed={seed}')
    tool('evaluate', f'--workdir={workdir}', f'--tfrecord_dir={data}', '--split=val')
  with open(eval_path) as f:
    return json.load(f)['miou']


def proxy_data(work: str) -> str:
  """The proxy's records (the quickstart's synthetic data) under `work`, written once."""
  data = os.path.join(work, 'data')
  for split, count in (('train', 48), ('val', 16)):
    if not os.path.exists(os.path.join(data, f'{split}-summary.json')):
      tool('convert_dataset', '--dataset=synthetic', f'--output_dir={data}', f'--split={split}',
           f'--num_examples={count}', '--image_size=96', '--num_shards=2')
  return data


def main(argv):
  del argv
  import numpy as np
  from official.autodeeplab.search import cost
  from official.autodeeplab.search.genotype import Genotype
  work = FLAGS.workdir
  data = proxy_data(work)
  start = time.time()
  genotypes = [searched(os.path.join(work, f'search-{s}'), data, int(s))
               for s in FLAGS.search_seeds]
  search_minutes = (time.time() - start) / 60
  start = time.time()
  tool('baseline', f'--workdir={os.path.join(work, "baseline")}',
       *[f'--genotype={g}' for g in genotypes], f'--num_random={FLAGS.num_random}',
       f'--gin_file={RETRAIN_GIN}', f'--tfrecord_dir={data}')
  baseline_minutes = (time.time() - start) / 60
  with open(os.path.join(work, 'baseline', 'baseline.json')) as f:
    baseline = json.load(f)
  given = [e for e in baseline['architectures'] if e['source'] == 'given']
  random_mious = [e['miou'] for e in baseline['architectures'] if e['source'] == 'random']
  seed_mious = [given[0]['miou']] + [
      retrained_miou(os.path.join(work, f'seed-{s}'), data, genotypes[0], s) for s in (1, 2)]
  plain = Genotype.from_json(genotypes[0])
  plain_madds = cost.cells_multiply_adds(plain, 20, 1024, 2048)
  costly = searched(os.path.join(work, 'search-cost'), data, int(FLAGS.search_seeds[0]),
                    f'search_config.cost_weight = {FLAGS.cost_weight}',
                    f'search_config.cost_target = {plain_madds / 2:.0f}.0')
  cost_madds = cost.cells_multiply_adds(Genotype.from_json(costly), 20, 1024, 2048)
  cost_miou = retrained_miou(os.path.join(work, 'retrain-cost'), data, costly, 0)
  print(json.dumps({
      'benchmark': 'search_trust', 'machine': platform.processor() or platform.machine(),
      'random_mious': random_mious, 'random_miou_median': float(np.median(random_mious)),
      'random_miou_std': float(np.std(random_mious)),
      'seed_mious_of_searched_0': seed_mious, 'seed_miou_std': float(np.std(seed_mious)),
      'searched': [{'miou': e['miou'], 'percentile': e['percentile'], 'rank': e['rank']}
                   for e in given],
      'search_minutes': round(search_minutes, 1),
      'baseline_minutes': round(baseline_minutes, 1),
      'cost': {'weight': FLAGS.cost_weight, 'target': plain_madds / 2,
               'cells_multiply_adds_without': plain_madds, 'cells_multiply_adds_with': cost_madds,
               'reduction': 1 - cost_madds / plain_madds,
               'miou_without': given[0]['miou'], 'miou_with': cost_miou}}))


if __name__ == '__main__':
  app.run(main)
