"""Latency-aware search: the table's parts (search/latency_table.py), the latency cost model
(search/cost.Latency: exact = the sum of the genotype's entries, expectation = exact when one-hot),
parts measured for real through LiteRT (serving/latency.py), the search's latency term, and the
bad inputs of tools.latency, search_config.latency_table, tools.describe and tools.baseline."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.search import cost
from official.autodeeplab.search import latency_table
from official.autodeeplab.search import sampling
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.training import experiment
from tests.conftest import run_tool
from tests.test_cost import one_hot


def fake_table(seed: int = 0, **setting) -> dict:
  """A complete table with a distinct random value per entry (what a measurement writes)."""
  rng = np.random.default_rng(seed)
  measured_for = {'engine': 'litert', 'engine_version': 'test', 'device': 'test',
                  'num_threads': 2, 'quantize': 'none', 'input_size': [65, 65],
                  'input_channels': 3, 'filter_multiplier': 4, 'num_blocks': 5,
                  'num_classes': 5, 'num_levels': 4, 'primitives': list(space.PRIMITIVES),
                  **setting}
  entries = {p.key: float(rng.uniform(0.1, 2.0)) for p in latency_table.parts()}
  return {'format': latency_table.FORMAT, 'version': latency_table.VERSION,
          'measured_for': measured_for, 'complete': True, 'entries_ms': entries}


def write(path, table) -> str:
  with open(path, 'w') as f:
    json.dump(table, f)
  return str(path)


def keys_used(genotype: Genotype) -> list[str]:
  """The entries a genotype's network runs, walked as the backbone builds it (the reference the
  cost model's arrays are checked against)."""
  path, keys = genotype.path, ['invoke', 'stem']
  for layer, level in enumerate(path):
    previous = path[layer - 1] if layer else 0
    keys.append(latency_table.prev_key('stem' if layer == 0 else previous, level))
    source = 's2' if layer == 0 else 's4' if layer == 1 else path[layer - 2]
    keys.append(latency_table.prevprev_key(source, min(previous, level), level))
    stride = 2 if level > previous else 1
    for block in genotype.cell:
      for index, op in block:
        s = stride if index < 2 else 1
        if not latency_table.computes_nothing(op, s):
          keys.append(latency_table.op_key(op, level, s))
    keys.append(f'combine:L{level}')
  keys += [f'aspp:L{path[-1]}', f'decoder:{"cell" if path[0] == 0 else "stem"}>L{path[-1]}']
  return keys


def test_parts_are_unique_and_cover_every_network():
  keys = [p.key for p in latency_table.parts()]
  assert len(keys) == len(set(keys))
  rng = np.random.default_rng(1)
  for _ in range(200):
    genotype = sampling.random_genotype(rng, 12, 5, space.FIRST_LEVELS)
    assert set(keys_used(genotype)) <= set(keys)


@pytest.mark.parametrize('seed', range(4))
def test_a_genotype_costs_the_sum_of_its_entries(seed):
  table = fake_table(seed)
  latency = cost.Latency(table)
  rng = np.random.default_rng(seed)
  for genotype in [PAPER_GENOTYPE] + [sampling.random_genotype(rng, 12, 5, space.FIRST_LEVELS)
                                      for _ in range(20)]:
    total = sum(table['entries_ms'][k] for k in keys_used(genotype))
    assert latency.exact(genotype) == pytest.approx(total, rel=1e-9)
    assert sum(latency.breakdown(genotype).values()) == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize('path', [(0, 1, 1, 2), (1, 2, 1, 0), (0, 0, 1, 2, 3, 2), (1, 1, 0, 0)])
def test_the_expectation_equals_the_exact_latency_when_one_hot(path):
  genotype = Genotype(cell=sampling.random_cell(np.random.default_rng(len(path))), path=path)
  latency = cost.Latency(fake_table(3))
  alpha, transitions = one_hot(genotype)
  expected = latency.expected(alpha, tf.constant(transitions))
  assert float(expected) == pytest.approx(latency.exact(genotype), rel=1e-5)


def test_the_expectation_of_a_soft_relaxation_is_differentiable_and_between_extremes():
  latency = cost.Latency(fake_table(4))
  rng = np.random.default_rng(0)
  alpha = tf.Variable(rng.normal(0, 0.5, [space.num_edges(5), len(space.PRIMITIVES)]),
                      dtype=tf.float32)
  from official.autodeeplab.search import decode
  beta = tf.Variable(rng.normal(0, 0.5, space.transition_mask(6).shape), dtype=tf.float32)
  with tf.GradientTape() as tape:
    transitions = tf.constant(decode.transition_probabilities(beta.numpy()))
    value = latency.expected(alpha, transitions)
  grad = tape.gradient(value, alpha)
  assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)
  assert 0 < float(value) < 1e4


def test_the_multiply_adds_model_is_the_same_interface():
  model = cost.MultiplyAdds(4, 65, 97)
  assert model.exact(PAPER_GENOTYPE) == cost.cells_multiply_adds(PAPER_GENOTYPE, 4, 65, 97)
  assert model.parts(PAPER_GENOTYPE)['fixed'] == 0 and model.parts(PAPER_GENOTYPE)['head'] == 0


# ----------------------------------------------------------------------------- reading tables


def test_bad_tables_are_one_line_naming_the_file(tmp_path):
  truncated = tmp_path / 'truncated.json'
  truncated.write_text(json.dumps(fake_table())[:500])
  with pytest.raises(UserInputError, match='truncated.json: not JSON'):
    latency_table.read(str(truncated))
  incomplete = fake_table()
  incomplete['complete'] = False
  with pytest.raises(UserInputError, match='incomplete'):
    latency_table.read(write(tmp_path / 'incomplete.json', incomplete))
  missing = fake_table()
  del missing['entries_ms']['stem']
  with pytest.raises(UserInputError, match='entries missing'):
    latency_table.read(write(tmp_path / 'missing.json', missing))
  negative = fake_table()
  negative['entries_ms']['stem'] = -1
  with pytest.raises(UserInputError, match='entry stem is -1'):
    latency_table.read(write(tmp_path / 'negative.json', negative))
  with pytest.raises(UserInputError, match='not a latency table'):
    latency_table.read(write(tmp_path / 'other.json', {'entries': {}}))
  with pytest.raises(UserInputError, match='cannot read'):
    latency_table.read(str(tmp_path / 'absent.json'))


@pytest.mark.parametrize('key, value, needs', [
    ('input_size', [129, 129], 'input_size'), ('filter_multiplier', 8, 'filter_multiplier'),
    ('num_blocks', 4, 'num_blocks'), ('num_classes', 19, 'num_classes'),
    ('primitives', list(space.PRIMITIVES[:-1]) + ['conv_7x7'], 'primitives')])
def test_a_table_for_another_setting_is_refused(tmp_path, key, value, needs):
  table = fake_table(**{key: value})
  if key == 'primitives':
    table['entries_ms'].update({p.key: 1.0 for p in latency_table.parts(
        4, tuple(value))})
  path = write(tmp_path / 'table.json', table)
  with pytest.raises(UserInputError, match=f'measured for .* needs {needs}'):
    latency_table.check_matches(latency_table.read(path), path, 'this search',
                                input_size=[65, 65], filter_multiplier=4, num_blocks=5,
                                num_classes=5, primitives=list(space.PRIMITIVES))


def test_the_search_config_takes_size_and_f_from_the_table(tmp_path):
  path = write(tmp_path / 'table.json', fake_table(input_size=[129, 97], filter_multiplier=8))
  config = experiment.with_latency_table(experiment.SearchConfig(latency_table=path))
  assert config.cost_image_size == (129, 97) and config.cost_filter_multiplier == 8
  agreeing = experiment.SearchConfig(latency_table=path, cost_filter_multiplier=8)
  assert experiment.with_latency_table(agreeing).cost_filter_multiplier == 8
  with pytest.raises(UserInputError, match='cost_filter_multiplier=12 disagrees'):
    experiment.with_latency_table(experiment.SearchConfig(latency_table=path,
                                                          cost_filter_multiplier=12))
  with pytest.raises(UserInputError, match='cost_target=0.0: with search_config.latency_table'):
    experiment.SearchConfig(latency_table=path, cost_weight=1.0).validate()


# ----------------------------------------------------------------------------- the search


def test_a_resumed_search_reads_the_workdirs_table(tmp_path):
  from official.autodeeplab.training import search_outputs
  path = write(tmp_path / 'table.json', fake_table())
  workdir = tmp_path / 'search'
  workdir.mkdir()
  plain = experiment.SearchConfig()
  assert search_outputs.workdir_latency_table(plain, str(workdir)) == plain
  write(workdir / latency_table.TABLE_FILE, fake_table())
  resumed = search_outputs.workdir_latency_table(plain, str(workdir))
  assert resumed.latency_table == str(workdir / latency_table.TABLE_FILE)
  assert resumed.cost_image_size == (65, 65)
  assert search_outputs.workdir_latency_table(
      experiment.SearchConfig(latency_table=path), str(workdir)).latency_table == path
  other = write(tmp_path / 'other.json', fake_table(seed=9))
  with pytest.raises(UserInputError, match='not the table this search started with'):
    search_outputs.workdir_latency_table(experiment.SearchConfig(latency_table=other),
                                         str(workdir))


# ----------------------------------------------------------------------------- measuring


def test_parts_measured_for_real_through_litert(tmp_path):
  """A few parts of an F=2, 33x33 network, converted and run by LiteRT: positive milliseconds,
  more work costing more."""
  from official.autodeeplab.serving import latency
  setting = latency.Setting(input_size=(33, 33), filter_multiplier=2, num_classes=3,
                            num_threads=1)
  timer = latency.Timer(setting, warmup=1, repeats=5, rounds=2)
  parts = {p.key: p for p in latency_table.parts()}
  keys = ['invoke', 'op:separable_5x5_2:L0:s1', 'aspp:L0', 'decoder:cell>L1']
  calls = {key: timer.prepare(*latency.part_function(parts[key], setting), parts[key].kind)
           for key in keys}
  measured = timer.measure(calls)
  assert all(value > 0 for value in measured.values())
  assert measured['aspp:L0'] > measured['invoke']


def test_the_latency_tool_refuses_bad_flags(tmp_path):
  cases = [(['--engine=openvino'], '--engine=openvino: expected one of litert, tensorflow'),
           (['--num_threads=0'], '--num_threads=0: must be at least 1'),
           (['--quantize=int4'], '--quantize=int4: expected one of'),
           (['--engine=tensorflow', '--quantize=int8'], '--quantize is for --engine=litert'),
           (['--input_size=12'], '--input_size'),
           (['--output=' + str(tmp_path)], 'is a directory')]
  for flags, message in cases:
    result = run_tool('latency', *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1], result.stderr
  other = tmp_path / 'other.json'
  other.write_text('{"not": "a table"}')
  result = run_tool('latency', f'--output={other}', '--input_size=33,33',
                    '--filter_multiplier=2')
  assert result.returncode == 2 and 'exists and is not a latency table' in result.stderr
  assert json.loads(other.read_text()) == {'not': 'a table'}  # left as it was


def test_describe_predicts_a_genotype_from_a_table(tmp_path):
  table = fake_table()
  path = write(tmp_path / 'table.json', table)
  result = run_tool('describe', '--genotype=paper', f'--latency_table={path}', '--json')
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['predicted_latency_ms'] == pytest.approx(
      sum(table['entries_ms'][k] for k in keys_used(PAPER_GENOTYPE)))
  assert set(report['breakdown']['latency_ms']) == {'invoke', 'stem', 'cells', 'aspp', 'decoder'}
  bad = run_tool('describe', '--genotype=paper', f'--latency_table={path}', '--num_classes=19')
  assert bad.returncode == 2 and 'needs num_classes = 19' in bad.stderr
  (tmp_path / 'broken.json').write_text('{"format": ')
  bad = run_tool('describe', '--genotype=paper', f'--latency_table={tmp_path}/broken.json')
  assert bad.returncode == 2 and 'broken.json: not JSON' in bad.stderr


@pytest.mark.slow  # a whole table measured through LiteRT, then a search: the slow tier
def test_a_table_measured_resumed_and_searched_with(tmp_path):
  """As a user runs it from a clone's root: tools.latency measures a tiny table for real; a
  rerun after an interruption measures only what is missing; a search bound to it reports its
  expected latency, keeps a copy that a resume without the binding and describe read."""
  from tests.conftest import user_dir
  root = user_dir(tmp_path)
  args = ['--input_size=33,33', '--filter_multiplier=2', '--num_classes=3', '--repeats=2',
          '--rounds=1', '--warmup=1', '--num_threads=1', '--output=runs/table.json']
  first = run_tool('latency', *args, cwd=root)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'the paper\'s genotype is predicted at' in first.stdout
  path = os.path.join(root, 'runs', 'table.json')
  table = latency_table.read(path)
  setting = table['measured_for']
  assert setting['input_size'] == [33, 33] and setting['filter_multiplier'] == 2
  assert setting['num_threads'] == 1 and setting['engine_version'].startswith('ai-edge-litert')
  assert all(value >= 0 for value in table['entries_ms'].values())
  # What an interrupted run leaves (entries are written as they are measured): resumed.
  kept = dict(list(table['entries_ms'].items())[:40])
  write(path, {**table, 'complete': False, 'entries_ms': kept})
  second = run_tool('latency', *args, cwd=root)
  assert second.returncode == 0, second.stderr[-3000:]
  resumed = latency_table.read(path)
  assert set(resumed['entries_ms']) == set(table['entries_ms'])
  assert all(resumed['entries_ms'][k] == v for k, v in kept.items())
  search = ['--workdir=runs/search', '--gin_file=experiments/search/synthetic_quickstart.gin',
            '--gin_bindings=build_supernet.num_layers = 2',
            '--gin_bindings=build_supernet.filter_multiplier = 2',
            '--gin_bindings=search_config.arch_start_step = 1', '--crop_size=33',
            '--num_classes=3', '--num_examples=8', '--image_size=40', '--checkpoint_every=1',
            '--export_every=1']
  bound = ['--gin_bindings=search_config.latency_table = "runs/table.json"',
           '--gin_bindings=search_config.cost_weight = 1.0',
           '--gin_bindings=search_config.cost_target = 0.001']
  searched = run_tool('search', *search, *bound, '--num_steps=3', cwd=root)
  assert searched.returncode == 0, searched.stderr[-3000:]
  assert 'cost term: expected latency from runs/table.json' in searched.stdout
  from official.autodeeplab.training import arch_history
  workdir = os.path.join(root, 'runs', 'search')
  assert arch_history.read(workdir)[-1]['expected_latency_ms'] > 0
  assert latency_table.read(os.path.join(workdir, 'latency_table.json')) == resumed
  again = run_tool('search', *search, '--num_steps=4', cwd=root)  # no binding: the copy
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'cost term: expected latency from runs/search/latency_table.json' in again.stdout
  described = run_tool('describe', '--workdir=runs/search', '--json', cwd=root)
  assert described.returncode == 0, described.stderr[-3000:]
  assert json.loads(described.stdout)['expected_latency_ms'] > 0
  other = run_tool('search', *search, '--num_steps=5', '--num_classes=4',
                   '--gin_bindings=search_config.latency_table = "runs/table.json"', cwd=root)
  assert other.returncode == 2 and 'needs num_classes = 4' in other.stderr
