"""The random baseline: genotypes sampled uniformly (paths against the enumeration), and
tools.baseline retraining a given and two random genotypes, resuming, refusing bad input."""
import collections
import itertools
import json
import os

import numpy as np
import pytest

from official.autodeeplab.search import sampling
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype
from tests.conftest import assert_bad_input

# One worker runs this module's tests (xdist_group), not always in a row: its fixtures are
# session-scoped, so they are built once all the same.
pytestmark = pytest.mark.xdist_group('baseline')


def _all_paths(num_layers, first_levels):
  paths = []
  for path in itertools.product(range(space.NUM_LEVELS), repeat=num_layers):
    if path[0] in first_levels and all(abs(a - b) <= 1 for a, b in zip(path, path[1:])):
      paths.append(path)
  return paths


@pytest.mark.parametrize('first_levels', [(0,), (0, 1)])
def test_paths_are_uniform_over_the_counted_ones(first_levels):
  paths = _all_paths(5, first_levels)
  assert len(paths) == space.num_paths(5, first_levels=first_levels)
  rng = np.random.default_rng(0)
  draws = 200 * len(paths)
  counts = collections.Counter(sampling.random_path(rng, 5, first_levels) for _ in range(draws))
  assert set(counts) == set(paths)
  expected = draws / len(paths)
  chi_square = sum((counts[p] - expected) ** 2 / expected for p in paths)
  # 99.9th percentile of chi-square with len(paths) - 1 degrees of freedom (Wilson-Hilferty).
  dof = len(paths) - 1
  limit = dof * (1 - 2 / (9 * dof) + 3.09 * (2 / (9 * dof)) ** 0.5) ** 3
  assert chi_square < limit, (chi_square, limit)


def test_cells_use_two_distinct_inputs_and_non_zero_ops_uniformly():
  rng = np.random.default_rng(1)
  cells = [sampling.random_cell(rng) for _ in range(3000)]
  for cell in cells[:50]:
    Genotype(cell=cell, path=(0,) * 3)  # validates
  last_block_pairs = collections.Counter(tuple(j for j, _ in cell[4]) for cell in cells)
  assert len(last_block_pairs) == 15  # C(6, 2)
  ops = collections.Counter(op for cell in cells for block in cell for _, op in block)
  assert set(ops) == set(sampling.NON_ZERO_OPS)
  assert max(ops.values()) < 1.15 * min(ops.values())


@pytest.fixture(scope='session')
def records(tmp_path_factory):
  from official.autodeeplab.data import convert
  root = tmp_path_factory.mktemp('baseline_data')
  for split, count in (('train', 8), ('val', 4)):
    convert.convert('synthetic', str(root), split, 1, num_examples=count, image_size=48,
                    num_classes=3, progress=False)
  genotype = root / 'given.json'
  Genotype(cell=sampling.random_cell(np.random.default_rng(5)), path=(0, 1, 1)).to_json(genotype)
  return root, genotype


def _baseline(tool, workdir, records, *extra):
  root, genotype = records
  return tool('baseline', f'--workdir={workdir}', f'--genotype={genotype}',
              '--gin_file=experiments/retrain/synthetic.gin',
              '--gin_bindings=train_config.total_steps = 2',
              '--gin_bindings=train_config.crop_size = 33',
              f'--tfrecord_dir={root}', '--image_size=64,64', *extra, timeout=900)


@pytest.mark.slow
def test_the_tool_retrains_given_and_random_genotypes_and_resumes(tool, tmp_path, records):
  """Random genotypes matched to the given one's predicted latency (a latency table), all
  retrained, ranked; a rerun resumes; another seed is refused."""
  from tests.test_latency import fake_table, write
  table = write(tmp_path / 'table.json', fake_table())
  matched = ['--num_random=2', f'--latency_table={table}', '--match_cost=0.3']
  result = _baseline(tool, tmp_path / 'run', records, *matched)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  report = json.loads((tmp_path / 'run' / 'baseline.json').read_text())
  sources = [e['source'] for e in report['architectures']]
  assert sources == ['given', 'random', 'random']
  given = report['architectures'][0]
  assert 1 <= given['rank'] <= 3 and 0 <= given['percentile'] <= 100
  assert all(e['params'] > 0 and e['multiply_adds'] > 0 for e in report['architectures'])
  latencies = [e['predicted_latency_ms'] for e in report['architectures']]
  assert all(abs(ms - latencies[0]) <= 0.3 * latencies[0] for ms in latencies[1:])
  assert report['latency_measured_for']['input_size'] == [65, 65]
  assert (tmp_path / 'run' / 'baseline.png').stat().st_size > 0
  assert sorted(os.listdir(tmp_path / 'run' / 'random-1' / 'checkpoints'))
  result = _baseline(tool, tmp_path / 'run', records, *matched)  # resumes: nothing to do
  assert result.returncode == 0, result.stdout[-2000:]
  assert 'tools.train' not in result.stdout and 'tools.evaluate' not in result.stdout
  result = _baseline(tool, tmp_path / 'run', records, *matched, '--seed=1')
  assert_bad_input(result, 'holds a run of another baseline')
  # A second seed and a supernet extend the finished baseline: only the new retrains run.
  search = tmp_path / 'search'
  result = tool('search', f'--workdir={search}', f'--tfrecord_dir={records[0]}',
                '--gin_file=experiments/search/synthetic_quickstart.gin',
                '--gin_bindings=build_supernet.num_layers = 3',
                '--gin_bindings=search_config.total_steps = 2',
                '--gin_bindings=search_config.arch_start_step = 1',
                '--gin_bindings=search_data.crop_size = 33', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  result = _baseline(tool, tmp_path / 'run', records, *matched, '--num_seeds=2',
                     f'--search_workdir={search}')
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert result.stdout.count('python -m tools.train') == 3  # the seed-1 retrains only
  assert 'ranks them as retraining does: Kendall tau' in result.stdout
  report = json.loads((tmp_path / 'run' / 'baseline.json').read_text())
  assert report['seeds'] == [0, 1] and report['seed_std'] >= 0
  for entry in report['architectures']:
    assert len(entry['miou_per_seed']) == 2
    assert entry['miou'] == pytest.approx(np.mean(entry['miou_per_seed']))
    assert len(entry['supernet_miou']) == 1 and 0 <= entry['supernet_miou'][0] <= 1
  low, high = report['architectures'][0]['percentile_ci90']
  assert 0 <= low <= high <= 100
  assert len(report['kendall_tau']) == len(report['spearman']) == 1
  assert report['supernet_ranking'][0]['search_workdir'] == str(search)
  assert report['supernet_ranking'][0]['step'] == 2


@pytest.mark.parametrize('flags,message', [
    (['--num_random=1'], '--num_random=1: at least 2 random genotypes'),
    (['--num_seeds=0'], '--num_seeds=0: must be at least 1'),
    (['--match_cost=-0.1'], '--match_cost=-0.1: must be a positive fraction'),
])
def test_bad_input(tool, tmp_path, records, flags, message):
  assert_bad_input(_baseline(tool, tmp_path / 'run', records, *flags), message)


def test_a_latency_table_of_another_space_is_refused(tool, tmp_path, records):
  from tests.test_latency import fake_table, write
  table = write(tmp_path / 'table.json', fake_table(num_blocks=4))
  result = _baseline(tool, tmp_path / 'run', records, f'--latency_table={table}')
  assert_bad_input(result, 'needs num_blocks = 5')
  assert not (tmp_path / 'run' / 'given-0').exists()


def test_a_search_workdir_without_a_supernet_checkpoint_is_refused(tool, tmp_path, records):
  (tmp_path / 'search').mkdir()
  result = _baseline(tool, tmp_path / 'run', records, f'--search_workdir={tmp_path / "search"}')
  assert_bad_input(result, f'--search_workdir={tmp_path / "search"}: no supernet checkpoint')
  assert not (tmp_path / 'run' / 'given-0').exists()


def test_a_genotype_that_fails_validation(tool, tmp_path, records):
  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps({'cell': [[[0, 'nope'], [1, 'skip']]], 'path': [0, 1]}))
  root, _ = records
  result = tool('baseline', f'--workdir={tmp_path / "run"}', f'--genotype={bad}',
                '--gin_file=experiments/retrain/synthetic.gin', f'--tfrecord_dir={root}')
  assert_bad_input(result, 'bad.json')
