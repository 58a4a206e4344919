"""The searched architecture as plain data: a cell and a network path.

A `Genotype` is what the search produces (`search/decode.py`) and what the retrain network is built
from (`modeling/segmenter.py`). It is stored as JSON:

    {"cell": [[[1, "atrous_5x5"], [0, "separable_3x3_2"]], ...],   # one entry per block
     "path": [0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1]}                  # one level per layer

Cell: block i applies two (input_index, op_name) pairs and adds the results; input 0 is H^{l-1}
(the previous cell's output), 1 is H^{l-2}, and 2 + j is block j of the same cell (j < i). The cell
output is the concatenation of all blocks. Path: level = log2(output stride) - 2, so 0 is stride 4
and 3 is stride 32; consecutive layers differ by at most one level.

Validation happens here, where a genotype enters the program; errors name the file and the field.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.search import space
from official.autodeeplab import files

Pair = tuple[int, str]
Block = tuple[Pair, Pair]


class GenotypeError(UserInputError):
  """A genotype (file or object) that breaks the format above."""


@dataclasses.dataclass(frozen=True)
class Genotype:
  """A discrete Auto-DeepLab architecture.

  Attributes:
    cell: one `((input, op), (input, op))` pair per block (see the module docstring).
    path: one level in 0..3 per layer.
  """
  cell: tuple[Block, ...]
  path: tuple[int, ...]

  def __post_init__(self):
    object.__setattr__(self, 'cell', tuple(
        tuple((int(i), str(op)) for i, op in block) for block in self.cell))
    object.__setattr__(self, 'path', tuple(int(level) for level in self.path))
    validate(self)

  @property
  def num_blocks(self) -> int:
    return len(self.cell)

  @property
  def num_layers(self) -> int:
    return len(self.path)

  def strides(self) -> tuple[int, ...]:
    """Output stride of each layer along the path."""
    return tuple(space.level_stride(level) for level in self.path)

  def goes_coarser(self) -> tuple[bool, ...]:
    """Whether each layer is one level coarser than the one before it (the stem is level 0): its
    cell then reads its inputs with stride 2."""
    return tuple(level > previous for previous, level in zip((0,) + self.path, self.path))

  def to_dict(self) -> dict:
    return {'cell': [[list(pair) for pair in block] for block in self.cell],
            'path': list(self.path)}

  def to_json(self, path: str | os.PathLike) -> None:
    """Writes the genotype atomically (`files.write_text`)."""
    files.write_text(os.fspath(path), json.dumps(self.to_dict(), indent=1) + '\n')

  @classmethod
  def from_dict(cls, data, source: str = 'genotype') -> Genotype:
    """Builds a validated genotype; errors are prefixed with `source` (e.g. the file name)."""
    if not isinstance(data, dict):
      raise GenotypeError(f'{source}: expected a JSON object with keys "cell" and "path"')
    missing = [key for key in ('cell', 'path') if key not in data]
    if missing:
      raise GenotypeError(f'{source}: missing field "{missing[0]}"')
    cell = data['cell']
    if not isinstance(cell, list) or not cell:
      raise GenotypeError(f'{source}: cell: expected a non-empty list of blocks')
    blocks = []
    for b, block in enumerate(cell):
      if not isinstance(block, (list, tuple)) or len(block) != 2:
        raise GenotypeError(f'{source}: cell[{b}]: expected 2 [input, op] pairs')
      pairs = []
      for k, pair in enumerate(block):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not isinstance(pair[0], int) or isinstance(pair[0], bool)
            or not isinstance(pair[1], str)):
          raise GenotypeError(
              f'{source}: cell[{b}][{k}]: expected [input_index, "op_name"], got {pair!r}')
        pairs.append((pair[0], pair[1]))
      blocks.append(tuple(pairs))
    path = data['path']
    if (not isinstance(path, list) or not path
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in path)):
      raise GenotypeError(f'{source}: path: expected a non-empty list of integer levels')
    try:
      return cls(cell=tuple(blocks), path=tuple(path))
    except GenotypeError as e:
      raise GenotypeError(f'{source}: {e}') from None

  @classmethod
  def from_json(cls, path: str | os.PathLike) -> Genotype:
    path = os.fspath(path)
    try:
      with open(path) as f:
        data = json.load(f)
    except FileNotFoundError:
      raise GenotypeError(f'{path}: no such file') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise GenotypeError(f'{path}: invalid JSON ({e})') from None
    return cls.from_dict(data, source=path)

  def describe(self) -> str:
    """The cell and path in readable form (used by `tools/describe`)."""
    names = lambda i: ('H^{l-1}', 'H^{l-2}')[i] if i < 2 else f'block{i - 2}'
    lines = [f'cell ({self.num_blocks} blocks, output = concat of all blocks):']
    for b, block in enumerate(self.cell):
      terms = ' + '.join(f'{op}({names(i)})' for i, op in block)
      lines.append(f'  block{b} = {terms}')
    lines.append(f'path ({self.num_layers} layers, level per layer; stride = 4 * 2**level):')
    lines.append('  levels:  ' + ' '.join(str(level) for level in self.path))
    lines.append('  strides: ' + ' '.join(str(s) for s in self.strides()))
    return '\n'.join(lines)


def validate(genotype: Genotype, num_levels: int = space.NUM_LEVELS) -> None:
  """Raises GenotypeError naming the field that is wrong."""
  for b, block in enumerate(genotype.cell):
    if len(block) != 2:
      raise GenotypeError(f'cell[{b}]: expected 2 (input, op) pairs, got {len(block)}')
    for k, (index, op) in enumerate(block):
      if op not in space.PRIMITIVES or op == space.ZERO:
        allowed = ', '.join(p for p in space.PRIMITIVES if p != space.ZERO)
        raise GenotypeError(f'cell[{b}][{k}]: unknown op {op!r} (expected one of {allowed})')
      if not 0 <= index < space.num_block_inputs(b):
        raise GenotypeError(
            f'cell[{b}][{k}]: input index {index} out of range (block {b} reads 0..{b + 1})')
  path = genotype.path
  if not path:
    raise GenotypeError('path: expected at least one layer')
  for layer, level in enumerate(path):
    if not 0 <= level < num_levels:
      raise GenotypeError(f'path[{layer}]: level {level} outside 0..{num_levels - 1}')
  if path[0] not in space.FIRST_LEVELS:
    raise GenotypeError(f'path[0]: the first layer follows the stride-4 stem, so its level must '
                        f'be one of {list(space.FIRST_LEVELS)}, got {path[0]}')
  for layer in range(1, len(path)):
    if abs(path[layer] - path[layer - 1]) > 1:
      raise GenotypeError(f'path[{layer}]: jumps from level {path[layer - 1]} to {path[layer]} '
                          '(at most one level per layer)')


def _cell_from_columns(ops: Sequence[str], inputs: Sequence[int]) -> tuple[Block, ...]:
  """Pairs Google's flat `operations` and `hiddenstate_indices` lists into blocks."""
  return tuple(((inputs[2 * b], ops[2 * b]), (inputs[2 * b + 1], ops[2 * b + 1]))
               for b in range(len(ops) // 2))


# The architecture the paper found (Fig. 3), as shipped in Google's DeepLab code ('hnasnet').
PAPER_GENOTYPE = Genotype(
    cell=_cell_from_columns(
        ops=('atrous_5x5', 'separable_3x3_2',
             'separable_3x3_2', 'atrous_3x3',
             'separable_3x3_2', 'separable_3x3_2',
             'separable_5x5_2', 'separable_5x5_2',
             'separable_5x5_2', 'atrous_5x5'),
        inputs=(1, 0, 1, 0, 3, 1, 4, 2, 3, 5)),
    path=(0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1),  # ends at stride 8
)


def load(spec: str) -> Genotype:
  """`paper` for PAPER_GENOTYPE, otherwise a path to a genotype JSON file."""
  return PAPER_GENOTYPE if spec == 'paper' else Genotype.from_json(spec)
