"""Dynamic loss scaling for float16 training, around any optimizer (the in-place SGD, Adam).

float16 has 5 exponent bits: small gradients of activations underflow to zero. The loss is
multiplied by a scale before differentiation and the gradients divided by it after; when any
gradient is not finite (the scale was too large), the update is skipped, the skip counted and the
scale halved; after `growth_steps` finite steps in a row it doubles (the scheme of Keras'
`LossScaleOptimizer` and of Micikevicius et al., 2018).

Why not Keras' `LossScaleOptimizer`: it wraps the optimizer, which moves the optimizer's slots
under `inner_optimizer/` in checkpoints, so a workdir could not be resumed in another precision.
Here the scale is its own object (checkpointed beside the optimizer, whatever the precision; in
float32 and bfloat16 it is not used and stays at its initial value) and the optimizer is untouched.

Every replica computes gradients of the same scaled loss; `apply` sums their finiteness across the
replicas, so all of them skip or apply together, and runs the optimizer in the cross-replica
context under `tf.cond` (a replica-context cond cannot contain the optimizer's all-reduce).
"""
from __future__ import annotations

import tensorflow as tf

INITIAL_SCALE = 2.0**15
GROWTH_STEPS = 2000
COLLAPSE_STEPS = 20  # skipped updates in a row that stop a run


class LossScale(tf.Module):
  """The scale and its counters (float32 / int64 variables; create it in the strategy's scope).

  Args:
    enabled: scale (float16) or not (the other precisions: `scale_loss` and `unscale` are the
      identity and `apply` applies).
    initial_scale: the first scale.
    growth_steps: finite steps in a row after which the scale doubles.
  """

  def __init__(self, enabled: bool, initial_scale: float = INITIAL_SCALE,
               growth_steps: int = GROWTH_STEPS, name: str = 'loss_scale'):
    super().__init__(name=name)
    self.enabled, self.growth_steps = enabled, growth_steps
    variable = lambda value, dtype, name: tf.Variable(
        value, dtype=dtype, trainable=False, name=name,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.scale = variable(initial_scale, tf.float32, 'scale')
    self.good_steps = variable(0, tf.int64, 'good_steps')
    self.skipped = variable(0, tf.int64, 'skipped')  # updates skipped in the whole run
    self.skipped_in_a_row = variable(0, tf.int64, 'skipped_in_a_row')

  def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
    return loss * self.scale if self.enabled else loss

  def unscale(self, gradients: list) -> list:
    if not self.enabled:
      return list(gradients)
    inverse = 1.0 / self.scale
    return [None if g is None else g * tf.cast(inverse, g.dtype) for g in gradients]

  def apply(self, strategy: tf.distribute.Strategy, update_fn, args) -> tf.Tensor:
    """Runs `strategy.run(update_fn, args)` unless a gradient in `args[0]` (per replica) is not
    finite on some replica; then the update is skipped and counted. Call it in a tf.function in
    the cross-replica context; returns whether the update was applied."""
    if not self.enabled:
      strategy.run(update_fn, args=args)
      return tf.constant(True)
    finite = strategy.run(_all_finite, args=(args[0],))
    bad = strategy.reduce(tf.distribute.ReduceOp.SUM, 1 - finite, axis=None)
    applied = tf.equal(bad, 0)

    def apply_update():
      strategy.run(update_fn, args=args)
      return tf.constant(True)
    tf.cond(applied, apply_update, lambda: tf.constant(False))
    self._update(applied)
    return applied

  def _update(self, applied: tf.Tensor) -> None:
    good = tf.where(applied, self.good_steps + 1, 0)
    grow = good >= self.growth_steps
    scale = tf.where(applied, tf.where(grow, self.scale * 2.0, self.scale),
                     tf.maximum(self.scale / 2.0, 1.0))
    self.scale.assign(scale)
    self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), good))
    skipped = tf.cast(tf.logical_not(applied), tf.int64)
    self.skipped.assign_add(skipped)
    self.skipped_in_a_row.assign(tf.where(applied, tf.constant(0, tf.int64),
                                          self.skipped_in_a_row + 1))

  def summary(self) -> dict:
    """TensorBoard scalars ({} when not scaling)."""
    if not self.enabled:
      return {}
    return {f'{self.name}/scale': float(self.scale.numpy()),
            f'{self.name}/skipped': int(self.skipped.numpy())}

  def describe(self) -> str:
    """The progress line's words (empty when not scaling)."""
    if not self.enabled:
      return ''
    return (f' {self.name.replace("_", " ")} {float(self.scale.numpy()):g} '
            f'({int(self.skipped.numpy())} skipped)')


def _all_finite(gradients) -> tf.Tensor:
  """1 when every gradient of this replica is finite, else 0 (int32, for a cross-replica sum)."""
  checks = [tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None]
  return tf.cast(tf.reduce_all(tf.stack(checks)), tf.int32)
