"""A latency table: what each part of the retrain network costs on one inference engine, for one
deployment setting (input size, F, B, classes), as `tools/latency.py` measures it; read here for
the search's cost term and `tools.describe` (`search/cost.Latency`).

The whole network, as `tools.export` writes it for the engine, is a sum of parts, each measured
as a small graph at exactly the shapes the network gives it (`parts`):
* `invoke`: one call's fixed overhead (counted once; every other entry has it subtracted);
* `stem`: the input's cast and normalisation, the three stem convs;
* `op:{op}:L{k}:s{stride}`: a candidate op in a level-k cell (F * 2**k channels), stride 2 when
  the path moves to level k from the finer level (ops reading a cell's inputs);
* `prev:{source}>{k}`: H^{l-1}'s preprocessing in a level-k cell (from level `source` or the
  `stem`; from the coarser level it is first resized x2, the move between levels);
* `prevprev:{source}@{at}>{k}`: H^{l-2} resized to H^{l-1}'s level `at` and, when its channels
  differ, projected (`source`: a level, or the stem's stride-2 `s2` / stride-4 `s4` outputs);
* `combine:L{k}`: the blocks' sums and the cell's concatenation;
* `aspp:L{k}`: the last cell's ReLU and ASPP when the path ends at level k;
* `decoder:{low}>L{k}`: the decoder (low-level features from a level-0 `cell` or the `stem`),
  the upsampling to the input size and what the export adds at its end (LiteRT: the scores;
  TensorFlow: the argmax too).
Ops that compute nothing in the retrain network (`zero`, an identity `skip`) cost 0.

This module imports only `search/` and `errors` (the search package stays pure data).
"""
from __future__ import annotations

import dataclasses
import json
import math

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.search import space

FORMAT = 'autodeeplab.latency_table'
VERSION = 1
TABLE_FILE = 'latency_table.json'  # the copy a search keeps in its workdir
ENGINES = ('litert', 'tensorflow')
# What a table was measured for that a network must share with it to be predicted by it.
SETTING_KEYS = ('input_size', 'input_channels', 'filter_multiplier', 'num_blocks', 'num_classes',
                'num_levels', 'primitives')


@dataclasses.dataclass(frozen=True)
class Part:
  """One entry to measure. `kind` is the key's first field; the rest say its shapes."""
  key: str
  kind: str
  level: int = 0      # the cell's (or ASPP's) level
  op: str = ''
  stride: int = 1
  source: str = ''    # prev / prevprev: a level ('0'..'3'), 'stem', 's2' or 's4'; decoder: low
  at: int = 0         # prevprev: the level H^{l-1} is at when the cell reads it


def op_key(op: str, level: int, stride: int) -> str:
  return f'op:{op}:L{level}:s{stride}'


def prev_key(source, level: int) -> str:
  return f'prev:{source}>{level}'


def prevprev_key(source, at: int, level: int) -> str:
  return f'prevprev:{source}@{at}>{level}'


def computes_nothing(op: str, stride: int) -> bool:
  """`zero` and the identity `skip`: no work in the retrain network."""
  return op == space.ZERO or (op == 'skip' and stride == 1)


def parts(num_levels: int = space.NUM_LEVELS,
          primitives: tuple[str, ...] = space.PRIMITIVES) -> list[Part]:
  """Every part a network of this space can meet (paths may start at level 0 or 1)."""
  result = [Part('invoke', 'invoke'), Part('stem', 'stem')]
  for k in range(num_levels):
    for stride in ((1, 2) if k else (1,)):
      result += [Part(op_key(op, k, stride), 'op', k, op, stride) for op in primitives
                 if not computes_nothing(op, stride)]
  for k in space.FIRST_LEVELS:
    result.append(Part(prev_key('stem', k), 'prev', k, source='stem'))
    result.append(Part(prevprev_key('s2', 0, k), 'prevprev', k, source='s2', at=0))
  for source in range(num_levels):
    for k in _neighbours(source, num_levels):
      result.append(Part(prev_key(source, k), 'prev', k, source=str(source)))
  # H^{l-2}, read at H^{l-1}'s level `at`: layer 1 reads the stem's stride-4 output (H^{l-1} at
  # a first level), later layers a cell's output (H^{l-1} one move from it).
  sources = [('s4', first) for first in space.FIRST_LEVELS] + [
      (str(pp), previous) for pp in range(num_levels) for previous in _neighbours(pp, num_levels)]
  prevprev = {}
  for source, previous in sources:
    for k in _neighbours(previous, num_levels):
      key = prevprev_key(source, min(previous, k), k)
      prevprev.setdefault(key, Part(key, 'prevprev', k, source=source, at=min(previous, k)))
  result += prevprev.values()
  result += [Part(f'combine:L{k}', 'combine', k) for k in range(num_levels)]
  result += [Part(f'aspp:L{k}', 'aspp', k) for k in range(num_levels)]
  result += [Part(f'decoder:{low}>L{k}', 'decoder', k, source=low)
             for low in ('cell', 'stem') for k in range(num_levels)]
  return result


def _neighbours(level: int, num_levels: int) -> list[int]:
  return [k for k in (level - 1, level, level + 1) if 0 <= k < num_levels]


def read(path: str) -> dict:
  """The table at `path`, checked as a whole (format, settings, every entry a finite number >= 0,
  complete); one line naming the file otherwise."""
  try:
    with open(path, encoding='utf-8') as f:
      table = json.load(f)
  except OSError as e:
    raise UserInputError(f'latency table {path}: cannot read it ({e.strerror})') from None
  except ValueError as e:
    raise UserInputError(f'latency table {path}: not JSON ({e}); a truncated file? measure it '
                         'again with tools.latency') from None
  check(table, path)
  return table


def check(table, path: str) -> None:
  where = f'latency table {path}'
  if not isinstance(table, dict) or table.get('format') != FORMAT:
    raise UserInputError(f'{where}: not a latency table (expected "format": "{FORMAT}", written '
                         'by tools.latency)')
  if table.get('version') != VERSION:
    raise UserInputError(f'{where}: version {table.get("version")}, this code reads {VERSION}')
  setting = table.get('measured_for')
  if not isinstance(setting, dict) or any(k not in setting for k in SETTING_KEYS):
    raise UserInputError(f'{where}: "measured_for" lacks one of {", ".join(SETTING_KEYS)}')
  if not table.get('complete'):
    raise UserInputError(f'{where}: incomplete ({len(table.get("entries_ms", {}))} entries); '
                         'rerun the same tools.latency command to finish it')
  entries = table.get('entries_ms')
  if not isinstance(entries, dict):
    raise UserInputError(f'{where}: no "entries_ms" object')
  missing = [p.key for p in parts(setting['num_levels'], tuple(setting['primitives']))
             if p.key not in entries]
  if missing:
    raise UserInputError(f'{where}: {len(missing)} entries missing (e.g. {missing[0]})')
  bad = [k for k, v in entries.items()
         if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0]
  if bad:
    raise UserInputError(f'{where}: entry {bad[0]} is {entries[bad[0]]!r}, expected '
                         'milliseconds >= 0')


def describe_setting(setting: dict) -> str:
  """'litert (2 threads, none), 129x129, F=8, B=5, 19 classes' for messages."""
  engine = setting.get('engine', '?')
  threads = setting.get('num_threads')
  detail = (f'{threads} thread{"s" if threads != 1 else ""}, quantize {setting.get("quantize")}'
            if engine == 'litert' else f'{setting.get("device_kind", "")} '
            f'{setting.get("precision")}'.strip())
  height, width = setting['input_size']
  return (f'{engine} ({detail}), {height}x{width} input, F={setting["filter_multiplier"]}, '
          f'B={setting["num_blocks"]}, {setting["num_classes"]} classes, '
          f'{setting["input_channels"]} channels')


def check_matches(table: dict, path: str, source: str, **expected) -> None:
  """Refuses a table measured for another setting than `expected` (keys of SETTING_KEYS; a None
  value is not checked), naming what it was measured for and what `source` needs."""
  setting = table['measured_for']
  for key, value in expected.items():
    if value is None:
      continue
    have = setting[key]
    if isinstance(value, (tuple, list)):
      value, have = list(value), list(have)
    if have != value:
      raise UserInputError(
          f'latency table {path} was measured for {describe_setting(setting)}; {source} needs '
          f'{key} = {value} (measure a table for it: python -m tools.latency ...)')
