r"""A random-architecture baseline: do the searched genotypes beat random ones of the same space
under the same training budget?

  python -m tools.baseline --workdir=runs/baseline --genotype=runs/search/genotype.json \
      [--genotype=...] --num_random=8 --gin_file=experiments/retrain/synthetic.gin \
      --tfrecord_dir=runs/quickstart/data [--gin_bindings=...] [--match_cost=0.1] [--seed=0] \
      [--latency_table=latency_table.json] [--num_seeds=2] [--search_workdir=runs/search ...]

Samples `--num_random` genotypes uniformly from the space the given ones come from (their L and B,
paths starting at the levels theirs start at; search/sampling.py), optionally only those whose
cells' multiply-adds are within `--match_cost` (a fraction) of the given genotypes' mean; retrains
every architecture, given and random, with the same gin, seed and steps (`tools.train`), evaluates
it on `--eval_split` (`tools.evaluate`), and writes `baseline.json` (one entry per architecture:
source, genotype, mIoU, params, multiply-adds; and each given genotype's rank and percentile among
the random ones) and `baseline.png` (mIoU against multiply-adds, the given ones marked). With
`--latency_table` (tools.latency) every entry also has `predicted_latency_ms` (at the table's
setting) and `--match_cost` matches the predicted latency instead of multiply-adds. Each
architecture is a sub-workdir (`given-0/`, `random-3/`; `given-0-seed1/` for its retrain at
--seed + 1), so a rerun resumes where it stopped (more seeds or more supernets extend a finished
baseline); a workdir of another gin, seed or sample is refused.

Retraining is noisy, so the evidence is statistical (search/evidence.py): with `--num_seeds=S`
every architecture is retrained at seeds --seed .. --seed + S - 1 (`miou_per_seed`; `miou` is
their mean), and each given genotype gets its percentile among the random ones with a bootstrap
90% interval over seeds and random draws (`percentile_ci90`); the summary has the random
genotypes' median and spread and the spread over seeds (`seed_std`). With `--search_workdir=DIR`
(repeatable: one per search) every architecture is also scored inside that search's trained
supernet without retraining (`training/supernet_ranking.py`: one-hot op weights and transitions,
on trainB of --tfrecord_dir): `supernet_miou` per entry (one value per supernet) and, per
supernet, `kendall_tau` and `spearman` against the retrained mIoU.
"""
from __future__ import annotations

import hashlib
import json
import os

from absl import flags

from official.autodeeplab import launch
from . import common

FLAGS = flags.FLAGS
common.define_flags('workdir', 'tfrecord_dir', 'seed')
common.define_gin_flags()
flags.DEFINE_multi_string('genotype', None, 'Given genotype(s): genotype.json files or "paper".')
flags.DEFINE_integer('num_random', 8, 'Random genotypes to sample.')
flags.DEFINE_float('match_cost', None, 'Keep random genotypes whose cells\' multiply-adds are '
                   'within this fraction of the given genotypes\' mean (default: any).')
flags.DEFINE_string('eval_split', 'val', 'Split the architectures are scored on.')
flags.DEFINE_string('image_size', '1024,2048', 'HEIGHT,WIDTH the multiply-adds are counted at.')
flags.DEFINE_string('latency_table', None, 'A latency table (tools.latency): record each '
                    'architecture\'s predicted latency, and --match_cost matches it.')
flags.DEFINE_integer('num_seeds', 1, 'Retrain every architecture at this many seeds (--seed, '
                     '--seed + 1, ...): per-seed mIoU, their mean ranks, a bootstrap interval.')
flags.DEFINE_multi_string('search_workdir', None, 'A tools.search workdir whose supernet also '
                          'scores every architecture without retraining (repeatable).')
flags.mark_flags_as_required(['workdir', 'genotype', 'tfrecord_dir'])

BASELINE_FILE, PLOT_FILE, CONFIG_FILE = 'baseline.json', 'baseline.png', 'baseline_config.json'
MAX_DRAWS = 100_000  # draws to find each cost-matched genotype before giving up


def _sample(given, multiplier: int, size: tuple[int, int], latency=None):
  """The random genotypes (seeded by --seed), cost-matched when asked: on the cells'
  multiply-adds, or on the predicted latency with a table (`latency`, a `cost.Latency`)."""
  import numpy as np
  from official.autodeeplab.search import cost
  from official.autodeeplab.search import sampling
  first = tuple(sorted({g.path[0] for g in given}))
  layers, blocks = given[0].num_layers, given[0].num_blocks
  rng = np.random.default_rng(FLAGS.seed)
  if latency is None:
    measure = lambda g: cost.cells_multiply_adds(g, multiplier, *size)
    show = lambda value: f'{value / 1e9:.2f}B multiply-adds'
  else:
    measure, show = latency.exact, lambda value: f'{value:.2f} ms predicted latency'
  target = np.mean([measure(g) for g in given])
  found = []
  while len(found) < FLAGS.num_random:
    for _ in range(MAX_DRAWS):
      candidate = sampling.random_genotype(rng, layers, blocks, first)
      if FLAGS.match_cost is None or abs(measure(candidate) - target) <= FLAGS.match_cost * target:
        break
    else:
      raise common.UserInputError(f'--match_cost={FLAGS.match_cost}: no random genotype within '
                                  f'{FLAGS.match_cost:.0%} of {show(target)} in {MAX_DRAWS} '
                                  'draws; widen it')
    found.append(candidate)
  return found


def _configuration(given) -> dict:
  """What the workdir's results depend on: a rerun with anything else is refused."""
  gin_text = ''.join(open(path).read() for path in FLAGS.gin_file)
  return {'gin_sha1': hashlib.sha1(gin_text.encode()).hexdigest(),
          'gin_bindings': list(FLAGS.gin_bindings), 'seed': FLAGS.seed,
          'num_random': FLAGS.num_random, 'match_cost': FLAGS.match_cost,
          'given': [g.to_dict() for g in given], 'tfrecord_dir': os.path.abspath(FLAGS.tfrecord_dir),
          'eval_split': FLAGS.eval_split,
          **({'latency_table_sha1': hashlib.sha1(open(FLAGS.latency_table, 'rb').read()).hexdigest()}
             if FLAGS.latency_table and FLAGS.match_cost is not None else {})}


def _retrain_and_evaluate(name: str, genotype, seed: int) -> dict:
  """One architecture's retrain at `seed` in its sub-workdir (`name`, `name-seedN` for seeds
  after --seed): trained (resumed) and evaluated unless already done."""
  workdir = os.path.join(FLAGS.workdir, name if seed == FLAGS.seed else f'{name}-seed{seed}')
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'genotype.json')
  if not os.path.exists(path):
    genotype.to_json(path)
  gin = [f'--gin_file={g}' for g in FLAGS.gin_file] + [
      f'--gin_bindings={b}' for b in FLAGS.gin_bindings]
  eval_path = os.path.join(workdir, 'eval.json')
  if not common.eval_is_current(eval_path, workdir):  # scored after a finished train: done
    common.run_stage('train', f'--workdir={workdir}', f'--tfrecord_dir={FLAGS.tfrecord_dir}',
                     f'--genotype={path}', f'--seed={seed}', *gin, caller='baseline')
  if not common.eval_is_current(eval_path, workdir):
    common.run_stage('evaluate', f'--workdir={workdir}', f'--tfrecord_dir={FLAGS.tfrecord_dir}',
                     f'--split={FLAGS.eval_split}', *gin, caller='baseline')
  with open(eval_path) as f:
    report = json.load(f)
  with open(os.path.join(workdir, 'model.json')) as f:
    report['num_classes'] = json.load(f)['num_classes']
  return report


def _supernets(given) -> list:
  """The --search_workdir supernets, restored (`supernet_ranking.Supernet`), checked against the
  given genotypes' space; a workdir without a supernet checkpoint is refused."""
  from official.autodeeplab.training import supernet_ranking
  found = []
  for workdir in FLAGS.search_workdir or []:
    found.append(supernet_ranking.load(workdir, '--search_workdir'))
    supernet_ranking.check_space(found[-1], given[0], f'--search_workdir={workdir}')
  return found


def _supernet_ranking(supernets, entries) -> dict:
  """Every architecture scored in every supernet on trainB (`supernet_miou`, one per supernet),
  and per supernet its ranking agreement with the retrained mIoU."""
  from official.autodeeplab.search import evidence
  from official.autodeeplab.search import genotype as genotype_lib
  from official.autodeeplab.training import supernet_ranking
  genotypes = [genotype_lib.Genotype.from_dict(e['genotype']) for e in entries]
  rankings = []
  for supernet in supernets:
    scores = supernet_ranking.score(supernet, genotypes, FLAGS.tfrecord_dir)
    for entry, miou in zip(entries, scores):
      entry.setdefault('supernet_miou', []).append(miou)
    rankings.append({'search_workdir': supernet.workdir, 'step': supernet.step,
                     **evidence.ranking_agreement(scores, [e['miou'] for e in entries])})
  return {'supernet_ranking': rankings,
          'kendall_tau': [r['kendall_tau'] for r in rankings],
          'spearman': [r['spearman'] for r in rankings]}


def _number(value) -> str:
  return 'undefined' if value is None else f'{value:.2f}'


def main(argv):
  del argv
  if FLAGS.num_random < 2:
    raise common.UserInputError(f'--num_random={FLAGS.num_random}: at least 2 random genotypes '
                                'are needed to rank against')
  if FLAGS.num_seeds < 1:
    raise common.UserInputError(f'--num_seeds={FLAGS.num_seeds}: must be at least 1')
  if FLAGS.match_cost is not None and FLAGS.match_cost <= 0:
    raise common.UserInputError(f'--match_cost={FLAGS.match_cost}: must be a positive fraction')
  if not FLAGS.gin_file:
    raise common.UserInputError('--gin_file: the retrain protocol every architecture gets, e.g. '
                                'experiments/retrain/synthetic.gin')
  for path in FLAGS.gin_file:
    if not os.path.isfile(path):
      raise common.UserInputError(f'--gin_file={path}: no such file')
  from official.autodeeplab.modeling import sizes
  from official.autodeeplab.search import genotype as genotype_lib
  size = sizes.parse_image_size(FLAGS.image_size, '--image_size')
  given = [genotype_lib.load(g) for g in FLAGS.genotype]
  shapes = {(g.num_layers, g.num_blocks) for g in given}
  if len(shapes) > 1:
    raise common.UserInputError(f'--genotype: the given genotypes come from different spaces '
                                f'(L, B: {sorted(shapes)})')
  latency = None
  if FLAGS.latency_table:
    from official.autodeeplab.search import cost
    from official.autodeeplab.search import latency_table
    latency = cost.Latency.from_file(FLAGS.latency_table)
    latency_table.check_matches(latency.table, FLAGS.latency_table, '--genotype',
                                num_blocks=given[0].num_blocks)
  # Each architecture is retrained by tools.train in a process of its own; this one only reads
  # the retrain protocol (its F) and counts multiply-adds.
  launch.start('inference', workdir=FLAGS.workdir, lock=True, strategy=None,
               gin_files=FLAGS.gin_file, gin_bindings=FLAGS.gin_bindings)
  from official.autodeeplab import files
  from official.autodeeplab.training import configs
  from official.autodeeplab.training import run_description
  multiplier = configs.retrain_filter_multiplier()
  run_description.check_or_write_json(FLAGS.workdir, CONFIG_FILE, _configuration(given),
                                      what='baseline (gin, seed, sample)')
  architectures = ([('given', f'given-{i}', g) for i, g in enumerate(given)] +
                   [('random', f'random-{i}', g)
                    for i, g in enumerate(_sample(given, multiplier, size, latency))])
  import numpy as np
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search import evidence
  from official.autodeeplab.utils import complexity
  supernets = _supernets(given)  # refused before any retrain when a workdir has none
  seeds = range(FLAGS.seed, FLAGS.seed + FLAGS.num_seeds)
  entries = []
  for source, name, genotype in architectures:
    reports = [_retrain_and_evaluate(name, genotype, seed) for seed in seeds]
    model = segmenter.build_segmenter(genotype, reports[0]['num_classes'],
                                      filter_multiplier=multiplier)
    per_seed = [r['miou'] for r in reports]
    entries.append({'source': source, 'name': name, 'genotype': genotype.to_dict(),
                    'miou': float(np.mean(per_seed)), 'miou_per_seed': per_seed,
                    'params': complexity.count_parameters(model),
                    'multiply_adds': complexity.multiply_adds(model, *size)['total']})
    if latency is not None:
      entries[-1]['predicted_latency_ms'] = latency.exact(genotype)
  random = [e for e in entries if e['source'] == 'random']
  random_mious = [e['miou'] for e in random]
  random_per_seed = [e['miou_per_seed'] for e in random]
  for entry in entries:
    if entry['source'] == 'given':
      entry.update({'rank': evidence.rank(entry['miou'], random_mious),
                    'percentile': evidence.percentile(entry['miou'], random_mious),
                    'percentile_ci90': list(evidence.bootstrap_percentile(
                        entry['miou_per_seed'], random_per_seed, seed=FLAGS.seed))})
  summary = {'image_size': list(size), 'filter_multiplier': multiplier,
             'seeds': list(seeds), 'random_miou_median': float(np.median(random_mious)),
             'random_miou_std': float(np.std(random_mious)),
             'seed_std': evidence.seed_spread([e['miou_per_seed'] for e in entries]),
             'architectures': entries}
  if supernets:
    summary.update(_supernet_ranking(supernets, entries))
  if latency is not None:
    summary['latency_measured_for'] = latency.setting
  files.write_json(os.path.join(FLAGS.workdir, BASELINE_FILE), summary)
  from official.autodeeplab.training import plots
  plots.plot_baseline(entries, os.path.join(FLAGS.workdir, PLOT_FILE), size)
  for entry in entries:
    if entry['source'] == 'given':
      low, high = entry['percentile_ci90']
      print(f'[baseline] {entry["name"]}: mIoU {100 * entry["miou"]:.1f}, rank {entry["rank"]} '
            f'of {len(random_mious) + 1}, beats {entry["percentile"]:.0f}% of the random ones '
            f'(90% interval {low:.0f}-{high:.0f}; random median '
            f'{100 * summary["random_miou_median"]:.1f})')
  for ranking in summary.get('supernet_ranking', []):
    print(f'[baseline] supernet of {ranking["search_workdir"]} (step {ranking["step"]}) ranks '
          f'them as retraining does: Kendall tau {_number(ranking["kendall_tau"])}, Spearman '
          f'{_number(ranking["spearman"])}')
  print(f'[baseline] {BASELINE_FILE} and {PLOT_FILE} written to {FLAGS.workdir}')


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
