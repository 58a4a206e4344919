"""The progress line's speed: images/s between two reports and the time left."""
from __future__ import annotations

import time


def format_duration(seconds: float) -> str:
  """'1d02h', '3h05m' or '4m07s'."""
  seconds = int(round(seconds))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, seconds = divmod(rest, 60)
  if days:
    return f'{days}d{hours:02d}h'
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{seconds:02d}s'


class ProgressMeter:
  """Step rate between two reports (so the first report, after the traced step, sets the mark),
  as images/s and an ETA."""

  def __init__(self, total_steps: int, images_per_step: int):
    self.total_steps, self.images_per_step = total_steps, images_per_step
    self._last = None  # (step, time) of the previous report
    self.steps_per_s = None

  def report(self, step: int) -> str:
    """' X img/s ETA D' with the rate since the previous report ('' at the first report)."""
    now = time.perf_counter()
    if self._last is not None and step > self._last[0] and now > self._last[1]:
      self.steps_per_s = (step - self._last[0]) / (now - self._last[1])
    self._last = (step, now)
    if self.steps_per_s is None:
      return ''
    eta = format_duration((self.total_steps - step) / self.steps_per_s)
    return f' {self.images_per_s():.2f} img/s ETA {eta}'

  def images_per_s(self) -> float | None:
    return None if self.steps_per_s is None else self.steps_per_s * self.images_per_step
