"""Measuring a latency table (`search/latency_table.py`): each part of the retrain network built
from the model's own layers as a small graph at exactly the shapes the whole network gives it,
converted as `tools.export` converts the whole (LiteRT) or called as a concrete `tf.function`
(TensorFlow), and timed.

Timing (`Timer`): `warmup` calls first (LiteRT's XNNPACK packs weights and TensorFlow
instantiates kernels on the first calls), then the median of `repeats` timed calls: the median
ignores the few slow calls a shared machine gives (another process, a page fault), where a mean
would carry them; the smallest of `rounds` such medians, taken apart in time. A
call's fixed overhead (the `invoke` entry: the same engine running one tiny op) is subtracted
from every other entry and counted once for the whole network.

`measure_network` prepares a whole network to be timed the same way (`benchmarks/latency_model.py`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from official.autodeeplab.data import datasets
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import heads
from official.autodeeplab.modeling import ops
from official.autodeeplab.search import cost
from official.autodeeplab.search import latency_table
from official.autodeeplab.search import space
from official.autodeeplab.search.space import STEM_FILTERS
from official.autodeeplab.search.space import STEM_STRIDES
from official.autodeeplab import files
from official.autodeeplab.serving import tflite


@dataclasses.dataclass(frozen=True)
class Setting:
  """What a table is measured for (its `measured_for`, less the device)."""
  engine: str = 'litert'
  input_size: tuple[int, int] = (513, 513)
  filter_multiplier: int = 20
  num_classes: int = 19
  num_blocks: int = space.NUM_BLOCKS
  num_threads: int = 2       # litert
  quantize: str = 'none'     # litert
  precision: str = 'float32'  # tensorflow

  def level_sizes(self) -> list[tuple[int, int]]:
    """(height, width) of each level (`cost.level_shapes`)."""
    return cost.level_shapes(*self.input_size)

  def stem2_size(self) -> tuple[int, int]:
    return tuple(math.ceil(x / STEM_STRIDES[0]) for x in self.input_size)

  def measured_for(self, device: str) -> dict:
    result = {
        'engine': self.engine, 'engine_version': engine_version(self.engine),
        'device': device, 'input_size': list(self.input_size), 'input_channels': 3,
        'filter_multiplier': self.filter_multiplier, 'num_blocks': self.num_blocks,
        'num_classes': self.num_classes, 'num_levels': space.NUM_LEVELS,
        'primitives': list(space.PRIMITIVES)}
    if self.engine == 'litert':
      result.update(num_threads=self.num_threads, quantize=self.quantize)
    else:
      result.update(precision=self.precision,
                    device_kind='GPU' if tf.config.list_physical_devices('GPU') else 'CPU')
    return result


def engine_version(engine: str) -> str:
  from importlib import metadata
  if engine == 'litert':
    return f'ai-edge-litert {metadata.version("ai-edge-litert")}'
  return f'tensorflow {tf.__version__}'


def describe_device(engine: str) -> str:
  """The CPU's model and the vector flags that matter, or the GPU's name."""
  if engine == 'tensorflow':
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
      details = tf.config.experimental.get_device_details(gpus[0])
      return f'GPU {details.get("device_name", gpus[0].name)}'
  name, flags = platform.processor() or platform.machine(), set()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          name = value.strip()
        elif key.strip() in ('flags', 'Features'):
          flags = set(value.split())
  except OSError:
    pass
  wanted = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'asimd', 'asimddp')
  present = [flag for flag in wanted if flag in flags]
  return f'{name}, {os.cpu_count()} logical cores' + (f' ({" ".join(present)})' if present else '')


# ----------------------------------------------------------------------------- the parts


def part_function(part: latency_table.Part, setting: Setting):
  """(a function of fixed-shape inputs computing `part` as the whole network does, the input
  specs)."""
  settings = ops.LayerSettings()
  sizes = setting.level_sizes()
  filters = lambda k: setting.filter_multiplier * 2**k
  cell_channels = lambda k: setting.num_blocks * filters(k)
  spec = lambda size, channels, dtype=tf.float32: tf.TensorSpec([1, *size, channels], dtype)
  kind = part.kind
  if kind == 'invoke':
    return (lambda x: x + 1.0), [spec((1, 1), 1)]
  if kind == 'stem':
    convs = [settings.conv(f, 3, strides=s) for f, s in zip(STEM_FILTERS, STEM_STRIDES)]
    norms = [settings.batch_norm() for _ in STEM_FILTERS]

    def stem(pixels):
      x = datasets.normalize(tf.cast(pixels, tf.float32))
      outputs = []
      for index, (conv, bn) in enumerate(zip(convs, norms)):
        x = bn(conv(tf.nn.relu(x) if index else x), training=False)
        outputs.append(x)
      return outputs[1], outputs[2]
    dtype = tf.float32 if setting.engine == 'litert' and setting.quantize == 'int8' else tf.uint8
    return stem, [spec(setting.input_size, 3, dtype)]
  if kind == 'op':
    layer = ops.build_op(part.op, filters(part.level), part.stride, settings)
    source = sizes[part.level - 1] if part.stride == 2 else sizes[part.level]
    return (lambda x: layer(x, training=False)), [spec(source, filters(part.level))]
  if kind in ('prev', 'prevprev'):
    size, channels = _source(part.source, setting, sizes, cell_channels)
    conv, bn = settings.conv(filters(part.level), 1), settings.batch_norm()
    if kind == 'prev':
      def prev(x):
        if part.level < int(part.source if part.source != 'stem' else 0):
          x = ops.resize_bilinear(x, sizes[part.level])  # the backbone's finer move
        return bn(conv(tf.nn.relu(x)), training=False)
      return prev, [spec(size, channels)]
    project = channels != filters(part.level)

    def prevprev(x):
      x = ops.resize_bilinear(x, np.array(sizes[part.at], np.int32))
      return bn(conv(tf.nn.relu(x)), training=False) if project else x
    return prevprev, [spec(size, channels)]
  if kind == 'combine':
    def combine(*outputs):
      states = []
      for b in range(setting.num_blocks):
        total = 0
        for y in outputs[2 * b:2 * b + 2]:
          total += y
        states.append(total)
      return tf.concat(states, axis=-1)
    return combine, [spec(sizes[part.level], filters(part.level))] * (2 * setting.num_blocks)
  if kind == 'aspp':
    aspp = heads.ASPP(space.level_stride(part.level), settings=settings)
    return ((lambda x: aspp(tf.nn.relu(x), training=False)),
            [spec(sizes[part.level], cell_channels(part.level))])
  if kind == 'decoder':
    decoder = heads.Decoder(setting.num_classes, settings=settings)
    low_channels = STEM_FILTERS[-1] if part.source == 'stem' else cell_channels(0)

    def decode(high, low):
      logits = decoder((high, low), training=False)
      scores = ops.resize_bilinear(tf.cast(logits, tf.float32), np.array(setting.input_size))
      if setting.engine == 'tensorflow':  # the SavedModel's predict_tensor: the class ids too
        return scores, tf.argmax(scores, -1, output_type=tf.int32)
      return scores
    return decode, [spec(sizes[part.level], 256), spec(sizes[0], low_channels)]
  raise ValueError(f'unknown part {part.key}')


def _source(source: str, setting: Setting, sizes, cell_channels) -> tuple[tuple[int, int], int]:
  """(size, channels) of a cell input: a level's cell, or the stem's outputs."""
  if source in ('stem', 's4'):
    return sizes[0], STEM_FILTERS[-1]
  if source == 's2':
    return setting.stem2_size(), STEM_FILTERS[-2]
  return sizes[int(source)], cell_channels(int(source))


# ----------------------------------------------------------------------------- the engines


class Timer:
  """Times functions on one engine. `prepare(function, specs, kind)` converts (LiteRT) or traces
  (TensorFlow) one and returns its call; `measure({key: call})` times them all in `rounds`
  rounds: in each, per call `warmup` calls then the median of `repeats`; the result is each
  key's smallest round median, in milliseconds. A shared machine takes a core away for periods of
  a second or so, longer than one call's repeats: rounds spread over time keep those periods from
  setting an entry (measured in docs/performance.md)."""

  def __init__(self, setting: Setting, warmup: int = 3, repeats: int = 15, rounds: int = 3,
               seed: int = 0):
    self.setting, self.warmup, self.repeats, self.rounds = setting, warmup, repeats, rounds
    self.rng = np.random.default_rng(seed)

  def _inputs(self, specs) -> list[np.ndarray]:
    arrays = []
    for spec in specs:
      shape = spec.shape.as_list()
      if spec.dtype == tf.uint8 or spec.shape[-1] == 3:
        array = self.rng.integers(0, 256, shape).astype(spec.dtype.as_numpy_dtype)
      else:
        array = self.rng.standard_normal(shape).astype(np.float32)
      arrays.append(array)
    return arrays

  def prepare(self, function: Callable, specs, kind: str = '') -> Callable[[], None]:
    """One call of `function` on inputs of `specs`, ready to time; `kind` (a part's) says an
    int8 model's edge types."""
    traced = tf.function(function, input_signature=specs)
    if self.setting.engine == 'litert':
      return self._litert_call(traced, specs, kind)
    return self._tensorflow_call(traced, specs)

  def measure(self, calls: dict[str, Callable[[], None]]) -> dict[str, float]:
    best = {key: math.inf for key in calls}
    for _ in range(self.rounds):
      for key, call in calls.items():
        best[key] = min(best[key], self._median(call))
    return best

  def _median(self, call) -> float:
    for _ in range(self.warmup):
      call()
    times = []
    for _ in range(self.repeats):
      start = time.perf_counter()
      call()
      times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)

  def litert_model(self, data: bytes) -> Callable[[], None]:
    """A LiteRT flatbuffer's invoke, its inputs set once (random values of their types)."""
    from ai_edge_litert import interpreter as litert
    interpreter = litert.Interpreter(model_content=data, num_threads=self.setting.num_threads)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
      shape, dtype = detail['shape'], detail['dtype']
      if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        value = self.rng.integers(info.min, info.max + 1, shape).astype(dtype)
      else:
        value = self.rng.standard_normal(shape).astype(dtype)
      interpreter.set_tensor(detail['index'], value)
    return interpreter.invoke

  def _litert_call(self, traced, specs, kind: str) -> Callable[[], None]:
    from tensorflow.python.framework import convert_to_constants
    function = convert_to_constants.convert_variables_to_constants_v2(
        traced.get_concrete_function())
    quantize = self.setting.quantize
    input_type = output_type = None
    if quantize == 'int8':  # int8 between parts, as inside the whole network; its edges as it has
      input_type = tf.uint8 if kind == 'stem' else tf.int8
      output_type = None if kind == 'decoder' else tf.int8
    data = tflite.convert_function(
        function, quantize,
        representative=lambda: (self._inputs(specs) for _ in range(8)),
        input_type=input_type, output_type=output_type)
    return self.litert_model(data)

  def _tensorflow_call(self, traced, specs) -> Callable[[], None]:
    concrete = traced.get_concrete_function()
    inputs = [tf.constant(x) for x in self._inputs(specs)]
    sync = getattr(tf.test.experimental, 'sync_devices', lambda: None)
    on_gpu = bool(tf.config.list_logical_devices('GPU'))

    def call():
      concrete(*inputs)
      if on_gpu:
        sync()
    return call


# ----------------------------------------------------------------------------- the table


def measure_table(setting: Setting, output: str, warmup: int = 3, repeats: int = 15,
                  rounds: int = 3, group: int = 12, progress: bool = True) -> dict:
  """Measures every part of `latency_table.parts()` into `output`, `group` parts at a time (each
  group converted, then timed in `rounds` rounds: `Timer`), the file rewritten atomically after
  each group; an existing table for the same setting is resumed (its entries kept), one for
  another setting refused. Returns the complete table."""
  device = describe_device(setting.engine)
  measured_for = setting.measured_for(device)
  table = _resumable(output, measured_for)
  table['method'] = {'warmup': warmup, 'repeats': repeats, 'rounds': rounds,
                     'statistic': 'smallest of the rounds\' medians',
                     'overhead': 'the invoke entry, subtracted from every other entry'}
  entries = table['entries_ms']
  raw = table.setdefault('raw_ms', {})
  timer = Timer(setting, warmup, repeats, rounds)
  every = latency_table.parts()
  todo = [p for p in every if p.key not in entries]
  from tqdm import tqdm
  bar = tqdm(total=len(every), initial=len(every) - len(todo), unit='part',
             desc=f'latency table ({setting.engine})', disable=not progress)
  for start in range(0, len(todo), group):
    chunk = todo[start:start + group]
    calls = {}
    for part in chunk:
      bar.set_postfix_str(part.key)
      calls[part.key] = timer.prepare(*part_function(part, setting), part.kind)
    raw.update(timer.measure(calls))
    for part in chunk:
      value = raw[part.key]
      entries[part.key] = value if part.key == 'invoke' else max(0.0, value - raw['invoke'])
    files.write_json(output, table)
    bar.update(len(chunk))
  bar.close()
  table['complete'] = True
  files.write_json(output, table)
  return table


def _resumable(output: str, measured_for: dict) -> dict:
  fresh = {'format': latency_table.FORMAT, 'version': latency_table.VERSION,
           'measured_for': measured_for, 'complete': False, 'entries_ms': {}}
  if not os.path.exists(output):
    return fresh
  try:
    with open(output, encoding='utf-8') as f:
      table = json.load(f)
  except (OSError, ValueError) as e:
    raise UserInputError(f'--output={output}: exists and is not a readable latency table ({e}); '
                         'remove it or choose another --output') from None
  if not isinstance(table, dict) or table.get('format') != latency_table.FORMAT:
    raise UserInputError(f'--output={output}: exists and is not a latency table; remove it or '
                         'choose another --output')
  if table.get('measured_for') != measured_for:
    raise UserInputError(
        f'--output={output}: holds a table for {latency_table.describe_setting(table["measured_for"])}'
        f' (on {table["measured_for"].get("device")}); this run measures '
        f'{latency_table.describe_setting(measured_for)} on {measured_for["device"]}: remove it or '
        'choose another --output')
  return table  # `measure_table` marks it complete once every part has an entry


def measure_network(model, setting: Setting, timer: Timer) -> Callable[[], None]:
  """One call of the whole network as `tools.export` writes it for the engine, ready for
  `timer.measure`: the LiteRT model `tflite.convert` gives, or the SavedModel's `predict_tensor`
  computation at one scale (normalisation, model, class ids)."""
  height, width = setting.input_size
  if setting.engine == 'litert':
    calibration = None
    if setting.quantize == 'int8':
      calibration = [timer.rng.integers(0, 256, [height, width, 3]).astype(np.float32)
                     for _ in range(8)]
    return timer.litert_model(tflite.convert(model, height, width, setting.quantize, calibration))

  def predict(pixels):
    logits = model(datasets.normalize(tf.cast(pixels, tf.float32)), training=False)
    return logits, tf.argmax(logits, -1, output_type=tf.int32)
  return timer.prepare(predict, [tf.TensorSpec([1, height, width, 3], tf.uint8)])
