"""Genotype: round trip through JSON, and one test per validation error."""
import json

import pytest

from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search.genotype import Genotype, GenotypeError, PAPER_GENOTYPE


def test_paper_genotype_is_the_reference_architecture():
  assert PAPER_GENOTYPE.path == (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)
  assert PAPER_GENOTYPE.cell[0] == ((1, 'atrous_5x5'), (0, 'separable_3x3_2'))
  assert PAPER_GENOTYPE.cell[4] == ((3, 'separable_5x5_2'), (5, 'atrous_5x5'))
  assert PAPER_GENOTYPE.strides()[-1] == 8


def test_json_round_trip(tmp_path):
  path = tmp_path / 'genotype.json'
  PAPER_GENOTYPE.to_json(path)
  assert Genotype.from_json(path) == PAPER_GENOTYPE
  assert genotype_lib.load(str(path)) == PAPER_GENOTYPE
  assert genotype_lib.load('paper') is PAPER_GENOTYPE
  assert [p.name for p in tmp_path.iterdir()] == ['genotype.json']  # no temporary left


def _write(tmp_path, data):
  path = tmp_path / 'g.json'
  path.write_text(data if isinstance(data, str) else json.dumps(data))
  return path


def _paper_dict(**changes):
  data = PAPER_GENOTYPE.to_dict()
  data.update(changes)
  return data


BAD = {
    'unknown_op': (_paper_dict(cell=[[[1, 'conv_7x7'], [0, 'skip']]]), 'cell[0][0]: unknown op'),
    'zero_op': (_paper_dict(cell=[[[1, 'zero'], [0, 'skip']]]), 'cell[0][0]: unknown op'),
    'index_out_of_range': (_paper_dict(cell=[[[1, 'skip'], [2, 'skip']]]),
                           'cell[0][1]: input index 2 out of range'),
    'negative_index': (_paper_dict(cell=[[[-1, 'skip'], [0, 'skip']]]), 'cell[0][0]: input index'),
    'jump': (_paper_dict(path=[0, 0, 2]), 'path[2]: jumps from level 0 to 2'),
    'level_outside': (_paper_dict(path=[0, 1, 2, 3, 4]), 'path[4]: level 4 outside 0..3'),
    'first_level': (_paper_dict(path=[2, 2]), 'path[0]'),
    'three_pairs': (_paper_dict(cell=[[[1, 'skip'], [0, 'skip'], [0, 'skip']]]),
                    'cell[0]: expected 2'),
    'empty_path': (_paper_dict(path=[]), 'path: expected a non-empty list'),
    'float_level': (_paper_dict(path=[0, 1.5]), 'path: expected a non-empty list of integer'),
    'missing_path': ({'cell': PAPER_GENOTYPE.to_dict()['cell']}, 'missing field "path"'),
    'not_an_object': ([1, 2], 'expected a JSON object'),
    'bad_pair': (_paper_dict(cell=[[['1', 'skip'], [0, 'skip']]]), 'cell[0][0]: expected'),
    'invalid_json': ('{"cell": [', 'invalid JSON'),
}


@pytest.mark.parametrize('name', sorted(BAD))
def test_bad_genotype_names_file_and_field(tmp_path, name):
  data, message = BAD[name]
  path = _write(tmp_path, data)
  with pytest.raises(GenotypeError) as info:
    Genotype.from_json(path)
  text = str(info.value)
  assert text.startswith(str(path)) and message in text and '\n' not in text


def test_missing_file(tmp_path):
  with pytest.raises(GenotypeError, match='no such file'):
    Genotype.from_json(tmp_path / 'nope.json')


def test_constructor_validates_too():
  with pytest.raises(GenotypeError, match='jumps'):
    Genotype(cell=PAPER_GENOTYPE.cell, path=(0, 2))
