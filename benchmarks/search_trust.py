r"""Does the search beat random sampling of its own space, with statistics that survive seed noise,
and does its supernet rank architectures as retraining does? One JSON line (issue "search
evidence"; docs/search_evidence.md holds the results).

  python benchmarks/search_trust.py [--proxy=synthetic|mri] [--workdir=runs/search_trust] \
      [--num_random=16] [--num_seeds=2] [--search_seeds=0,1,2] [--variant=NAME \
      --search_bindings='search_config.x = y' ...] [--sharpness] [--cost_weight=10]

On a proxy task (synthetic: the quickstart's data, experiments/{search,retrain}/proxy.gin; mri:
real T1 MRI slices prepared by benchmarks/mri_proxy.py, experiments/{search,retrain}/
proxy_mri.gin), every stage run by its binary:
1. one search per seed in `search_seeds`; each found genotype is a "given" one;
2. `tools.baseline` with those genotypes, `num_random` random ones of the same space, every
   architecture retrained at `num_seeds` seeds and evaluated alike, and every search's supernet
   scoring all of them (`--search_workdir`): percentiles with bootstrap 90% intervals, the random
   median and spread, the seed spread, Kendall tau / Spearman of each supernet;
3. with `--sharpness`: the seed-0 search again with `search_config.track_sharpness = True` (the
   dominant Hessian eigenvalue at each export, every 5 steps) and its minutes against the plain
   one's (which exports every 20);
4. with `--cost_weight`: the seed-0 search with a cost term at half of its genotype's cells'
   multiply-adds (S, 1024x2048) and that genotype retrained.
With `--variant=NAME --search_bindings=...` (a change to the search) only the variant's searches
(`search-NAME-SEED`) and their genotypes' retrains (`variant-NAME/given-I[-seedS]`, the baseline's
protocol and seeds) run, ranked against the plain study's random genotypes (run that first).
Rerunning resumes: every stage skips what its workdir already holds (the baseline's sub-workdirs
carry the retrains across sessions); a larger --num_random or --num_seeds extends them.
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

flags.DEFINE_enum('proxy', 'synthetic', ['synthetic', 'mri'], 'Which proxy task.')
flags.DEFINE_string('workdir', None, 'Where everything is written (default runs/search_trust '
                    'or runs/search_trust_mri).')
flags.DEFINE_integer('num_random', 16, 'Random genotypes in the baseline.')
flags.DEFINE_integer('num_seeds', 2, 'Retrain seeds per architecture.')
flags.DEFINE_list('search_seeds', ['0', '1', '2'], 'Seeds of the searches.')
flags.DEFINE_string('variant', None, 'A name for --search_bindings (its searches and baseline '
                    'get workdirs of their own).')
flags.DEFINE_multi_string('search_bindings', [], 'Gin bindings of the searches (a variant).')
flags.DEFINE_boolean('sharpness', False, 'Also run the seed-0 search with track_sharpness.')
flags.DEFINE_float('cost_weight', 0.0, 'search_config.cost_weight of a cost run (0: none).')
FLAGS = flags.FLAGS
SHARPNESS_EXPORT_EVERY = 5  # a point of the sharpness curve every 5 of the proxy's 40 steps
GINS = {'synthetic': ('experiments/search/proxy.gin', 'experiments/retrain/proxy.gin'),
        'mri': ('experiments/search/proxy_mri.gin', 'experiments/retrain/proxy_mri.gin')}


def tool(name: str, *args: str) -> str:
  """Runs a binary; its stdout (a failure stops the benchmark with the binary's stderr)."""
  result = subprocess.run([sys.executable, '-m', f'tools.{name}', *args], capture_output=True,
                          text=True)
  if result.returncode:
    sys.exit(f'tools.{name} {" ".join(args)} failed:\n{result.stderr[-3000:]}')
  return result.stdout


def searched(workdir: str, data: str, seed: int, *bindings: str) -> tuple[str, float]:
  """(the genotype of a search, its minutes; 0 when it was already there)."""
  genotype = os.path.join(workdir, 'genotype.json')
  start = time.time()
  done = os.path.join(workdir, 'benchmark_done')  # the search ran to its end (not cut short)
  if not os.path.exists(done):
    tool('search', f'--workdir={workdir}', f'--tfrecord_dir={data}',
         f'--gin_file={GINS[FLAGS.proxy][0]}', f'--seed={seed}',
         *[f'--gin_bindings={b}' for b in bindings])
    with open(done, 'w') as f:
      f.write(f'{(time.time() - start) / 60:.3f}\n')
  else:
    with open(done) as f:
      return genotype, float(f.read())
  return genotype, (time.time() - start) / 60


def proxy_data(work: str) -> str:
  """The proxy's records under `work`, written once."""
  data = os.path.join(work, 'data')
  if FLAGS.proxy == 'synthetic':
    for split, count in (('train', 48), ('val', 16)):
      if not os.path.exists(os.path.join(data, f'{split}-summary.json')):
        tool('convert_dataset', '--dataset=synthetic', f'--output_dir={data}', f'--split={split}',
             f'--num_examples={count}', '--image_size=96', '--num_shards=2')
    return data
  folder = os.path.join(work, 'mri_folder')
  if not os.path.exists(os.path.join(folder, 'dataset.json')):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mri_proxy.py')
    result = subprocess.run([sys.executable, script, f'--output_dir={folder}'])
    if result.returncode:
      sys.exit(f'{script} failed')
  for split in ('train', 'val'):
    if not os.path.exists(os.path.join(data, f'{split}-summary.json')):
      tool('convert_dataset', '--dataset=folder', f'--data_dir={folder}', f'--output_dir={data}',
           f'--split={split}', '--num_shards=2')
  return data


def retrained_miou(workdir: str, data: str, genotype: str, seed: int) -> float:
  """One retrain as tools.baseline runs it (its gin, `seed`), evaluated on val."""
  eval_path = os.path.join(workdir, 'eval.json')
  if not os.path.exists(eval_path):
    tool('train', f'--workdir={workdir}', f'--tfrecord_dir={data}', f'--genotype={genotype}',
         f'--gin_file={GINS[FLAGS.proxy][1]}', f'--seed={seed}')
    tool('evaluate', f'--workdir={workdir}', f'--tfrecord_dir={data}', '--split=val',
         f'--gin_file={GINS[FLAGS.proxy][1]}')
  with open(eval_path) as f:
    return json.load(f)['miou']


def _variant(work: str, data: str, found) -> dict:
  """A variant's genotypes retrained at the plain baseline's seeds and ranked among its random
  genotypes (search/evidence.py)."""
  import numpy as np
  from official.autodeeplab.search import evidence
  with open(os.path.join(work, 'baseline', 'baseline.json')) as f:
    baseline = json.load(f)
  random = [e['miou_per_seed'] for e in baseline['architectures'] if e['source'] == 'random']
  means = [float(np.mean(r)) for r in random]
  searched_ = []
  for i, (genotype, minutes) in enumerate(found):
    per_seed = [retrained_miou(os.path.join(work, f'variant-{FLAGS.variant}',
                                            f'given-{i}' + (f'-seed{s}' if s else '')),
                               data, genotype, s) for s in baseline['seeds']]
    with open(genotype) as f:
      searched_.append({'genotype': json.load(f), 'miou_per_seed': per_seed,
                        'miou': float(np.mean(per_seed)),
                        'percentile': evidence.percentile(np.mean(per_seed), means),
                        'percentile_ci90': list(evidence.bootstrap_percentile(per_seed, random)),
                        'search_minutes': round(minutes, 2)})
  return {'benchmark': 'search_trust', 'proxy': FLAGS.proxy, 'variant': FLAGS.variant,
          'search_bindings': FLAGS.search_bindings, 'searched': searched_,
          'mean_searched_percentile': float(np.mean([e['percentile'] for e in searched_])),
          'random_miou_median': baseline['random_miou_median']}


def main(argv):
  del argv
  import numpy as np
  work = FLAGS.workdir or ('runs/search_trust' if FLAGS.proxy == 'synthetic'
                           else 'runs/search_trust_mri')
  data = proxy_data(work)
  variant = f'-{FLAGS.variant}' if FLAGS.variant else ''
  searches = [os.path.join(work, f'search{variant}-{s}') for s in FLAGS.search_seeds]
  found = [searched(w, data, int(s), *FLAGS.search_bindings)
           for w, s in zip(searches, FLAGS.search_seeds)]
  if FLAGS.variant:
    print(json.dumps(_variant(work, data, found)))
    return
  start = time.time()
  baseline_dir = os.path.join(work, 'baseline')
  tool('baseline', f'--workdir={baseline_dir}', *[f'--genotype={g}' for g, _ in found],
       f'--num_random={FLAGS.num_random}', f'--num_seeds={FLAGS.num_seeds}',
       f'--gin_file={GINS[FLAGS.proxy][1]}', f'--tfrecord_dir={data}',
       *[f'--search_workdir={w}' for w in searches])
  baseline_minutes = (time.time() - start) / 60
  with open(os.path.join(baseline_dir, 'baseline.json')) as f:
    baseline = json.load(f)
  given = [e for e in baseline['architectures'] if e['source'] == 'given']
  result = {
      'benchmark': 'search_trust', 'proxy': FLAGS.proxy, 'variant': FLAGS.variant,
      'search_bindings': FLAGS.search_bindings,
      'machine': platform.processor() or platform.machine(),
      'num_random': FLAGS.num_random, 'seeds': baseline['seeds'],
      'random_miou_median': baseline['random_miou_median'],
      'random_miou_std': baseline['random_miou_std'], 'seed_std': baseline['seed_std'],
      'searched': [{key: e[key] for key in ('genotype', 'miou', 'miou_per_seed', 'percentile',
                                            'percentile_ci90', 'rank')} for e in given],
      'mean_searched_percentile': float(np.mean([e['percentile'] for e in given])),
      'kendall_tau': baseline.get('kendall_tau'), 'spearman': baseline.get('spearman'),
      'search_minutes': [round(m, 2) for _, m in found],
      'baseline_minutes_this_run': round(baseline_minutes, 1)}
  if FLAGS.sharpness:
    _, minutes = searched(os.path.join(work, 'search-sharpness-0'), data,
                          int(FLAGS.search_seeds[0]), *FLAGS.search_bindings,
                          'search_config.track_sharpness = True',
                          f'loop_settings.export_every = {SHARPNESS_EXPORT_EVERY}')
    with open(os.path.join(work, 'search-sharpness-0', 'arch_history.jsonl')) as f:
      history = [json.loads(line) for line in f if line.strip()]
    result['sharpness'] = {'minutes_with': round(minutes, 2),
                           'minutes_without': result['search_minutes'][0],
                           'curve': [(r['step'], r.get('dominant_eigenvalue')) for r in history],
                           'seconds_per_export': [r.get('sharpness_seconds') for r in history]}
  if FLAGS.cost_weight:
    from official.autodeeplab.search import cost
    from official.autodeeplab.search.genotype import Genotype
    plain_madds = cost.cells_multiply_adds(Genotype.from_json(found[0][0]), 20, 1024, 2048)
    costly, _ = searched(os.path.join(work, 'search-cost'), data, int(FLAGS.search_seeds[0]),
                         f'search_config.cost_weight = {FLAGS.cost_weight}',
                         f'search_config.cost_target = {plain_madds / 2:.0f}.0')
    result['cost'] = {'weight': FLAGS.cost_weight, 'target': plain_madds / 2,
                      'cells_multiply_adds_without': plain_madds,
                      'cells_multiply_adds_with': cost.cells_multiply_adds(
                          Genotype.from_json(costly), 20, 1024, 2048)}
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
