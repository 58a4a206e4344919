"""Learning-rate schedules and the paper's weight decay, shared by the search and the retrain.

* search (paper sec. 5.1): SGD momentum 0.9 with a cosine schedule 0.025 -> 0.001;
* retrain (sec. 5.2, DeepLab's protocol): SGD momentum 0.9 with the 'poly' schedule
  lr = base * (1 - step / total) ** 0.9 from 0.05, optionally after a linear warm-up.

Weight decay in the paper (and in the PyTorch/TF-slim code it came from) is an L2 penalty whose
gradient is added to the loss gradient, not Keras 3's decoupled `weight_decay`: the search adds
it in its SGD update (`SGD(l2=...)`, in place) and to the architecture gradients
(`add_weight_decay`), the retrain model carries it as kernel regularisers
whose `model.losses` join the loss.
"""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable('autodeeplab')
class PolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """DeepLab's 'poly' schedule with an optional linear warm-up.

  lr(step) = initial_learning_rate * step / warmup_steps            for step < warmup_steps,
             (initial - end) * (1 - step / total_steps) ** power + end   afterwards (clamped at
             total_steps).

  Args:
    initial_learning_rate: the base learning rate (0.05 in the paper).
    total_steps: the length of the schedule (the whole training run).
    power: the polynomial's power (0.9).
    end_learning_rate: the rate reached at total_steps.
    warmup_steps: steps of linear warm-up from 0 (0: none).
  """

  def __init__(self, initial_learning_rate: float, total_steps: int, power: float = 0.9,
               end_learning_rate: float = 0.0, warmup_steps: int = 0):
    self.initial_learning_rate = float(initial_learning_rate)
    self.total_steps = max(1, int(total_steps))
    self.power = float(power)
    self.end_learning_rate = float(end_learning_rate)
    self.warmup_steps = int(warmup_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    fraction = tf.minimum(step, float(self.total_steps)) / float(self.total_steps)
    decayed = ((self.initial_learning_rate - self.end_learning_rate) *
               tf.pow(1.0 - fraction, self.power) + self.end_learning_rate)
    if self.warmup_steps <= 0:
      return decayed
    warmup = self.initial_learning_rate * step / float(self.warmup_steps)
    return tf.where(step < float(self.warmup_steps), warmup, decayed)

  def get_config(self):
    return {'initial_learning_rate': self.initial_learning_rate, 'total_steps': self.total_steps,
            'power': self.power, 'end_learning_rate': self.end_learning_rate,
            'warmup_steps': self.warmup_steps}


def cosine_schedule(initial_learning_rate: float, total_steps: int,
                    final_learning_rate: float) -> keras.optimizers.schedules.LearningRateSchedule:
  """Cosine decay from initial to final over total_steps (the search's weight schedule)."""
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate, max(1, total_steps),
      alpha=final_learning_rate / initial_learning_rate)


def add_weight_decay(gradients, variables, weight_decay: float) -> list:
  """gradient + weight_decay * variable: the gradient of an L2 penalty weight_decay / 2 * |v|^2."""
  if not weight_decay:
    return list(gradients)
  return [g + weight_decay * v for g, v in zip(gradients, variables)]


@keras.saving.register_keras_serializable('autodeeplab')
class SGD(keras.optimizers.SGD):
  """Keras's SGD with heavy-ball momentum, updating each variable in place, with an optional L2.

  The update is Keras's: m <- momentum * m - lr * (g + l2 * w); w <- w + m. Keras writes it as
  tensor arithmetic, which allocates m * momentum, lr * g and their difference for every
  variable, and adding the L2 term first allocates two more; nothing orders the variables, so
  all of those can be alive at once. In the search they made the weight update, not the
  forward/backward pass, the step's memory peak (TensorFlow's allocator statistics;
  docs/performance.md). Here each variable takes two in-place kernels:
  ResourceApplyGradientDescent subtracts (lr * l2 / momentum) * w from m, then
  ResourceApplyKerasMomentum computes m <- momentum * m - lr * g; w <- w + m. Together they are
  the update above (equal up to float rounding); no weight-sized temporary is made. Without
  momentum, with Nesterov momentum or with sparse gradients, Keras's own update runs (on
  g + l2 * w). Slots, iterations and the checkpoint layout are Keras's.

  Args:
    learning_rate: a float or a schedule.
    momentum: the heavy-ball momentum (0.9 in the paper).
    l2: the paper's weight decay, the gradient of l2 / 2 * |w|^2 (0: none).
    **kwargs: keras.optimizers.SGD's other arguments.
  """

  def __init__(self, learning_rate=0.01, momentum: float = 0.9, l2: float = 0.0, **kwargs):
    super().__init__(learning_rate, momentum=momentum, **kwargs)
    self.l2 = float(l2)

  def update_step(self, gradient, variable, learning_rate):
    fused = self.momentum != 0 and not self.nesterov and isinstance(gradient, tf.Tensor)
    if not fused:
      if self.l2:
        gradient = gradient + self.l2 * tf.convert_to_tensor(variable)
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    learning_rate = tf.cast(learning_rate, dtype)
    momentum = tf.cast(self.momentum, dtype)
    accumulator = self.momentums[self._get_variable_index(variable)]
    # Keras and TensorFlow variables both expose .handle (in an update context, this replica's).
    var_handle, accumulator_handle = variable.handle, accumulator.handle
    if self.l2:
      tf.raw_ops.ResourceApplyGradientDescent(
          var=accumulator_handle, alpha=learning_rate * (self.l2 / self.momentum),
          delta=tf.convert_to_tensor(variable))
    tf.raw_ops.ResourceApplyKerasMomentum(
        var=var_handle, accum=accumulator_handle, lr=learning_rate,
        grad=tf.cast(gradient, dtype), momentum=momentum, use_nesterov=False)

  def get_config(self):
    return {**super().get_config(), 'l2': self.l2}


def sgd(learning_rate, momentum: float = 0.9, l2: float = 0.0) -> SGD:
  """SGD with (heavy-ball) momentum and the paper's L2, as both the search and the retrain use it
  (the retrain's L2 is in its loss, as kernel regularisers, so it passes none here)."""
  return SGD(learning_rate, momentum=momentum, l2=l2)
