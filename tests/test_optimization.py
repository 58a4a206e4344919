"""Learning-rate schedules and the L2 weight decay added to gradients."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.training import optimization


def test_poly_schedule_is_deeplabs():
  schedule = optimization.PolynomialDecay(0.05, 1000, power=0.9)
  for step in (0, 1, 500, 999):
    assert float(schedule(step)) == pytest.approx(0.05 * (1 - step / 1000)**0.9, rel=1e-4)
  assert float(schedule(1000)) == pytest.approx(0, abs=1e-6)  # clamped at the end
  assert float(schedule(5000)) == pytest.approx(0, abs=1e-6)


def test_poly_schedule_warmup_and_end_rate():
  schedule = optimization.PolynomialDecay(0.1, 100, power=1.0, end_learning_rate=0.01,
                                          warmup_steps=10)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.05)
  assert float(schedule(50)) == pytest.approx(0.09 * 0.5 + 0.01)
  assert float(schedule(100)) == pytest.approx(0.01)
  restored = optimization.PolynomialDecay(**schedule.get_config())
  assert float(restored(37)) == float(schedule(37))


def test_cosine_schedule_ends_at_the_final_rate():
  schedule = optimization.cosine_schedule(0.025, 100, 0.001)
  assert float(schedule(0)) == pytest.approx(0.025)
  assert float(schedule(100)) == pytest.approx(0.001)


def test_weight_decay_is_the_l2_gradient():
  v = tf.Variable([1.0, -2.0])
  with tf.GradientTape() as tape:
    penalty = 0.5 * 3e-4 * tf.reduce_sum(v**2)
  expected = tape.gradient(penalty, v)
  decayed = optimization.add_weight_decay([tf.zeros(2)], [v], 3e-4)
  np.testing.assert_allclose(decayed[0], expected, rtol=1e-6)


def _run(optimizer, steps=3, l2_in_gradient=0.0):
  rng = np.random.default_rng(0)
  variables = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in ([4, 3], [5])]
  optimizer.build(variables)
  for step in range(steps):
    grads = [tf.constant(rng.normal(size=v.shape), tf.float32) for v in variables]
    grads = optimization.add_weight_decay(grads, variables, l2_in_gradient)
    optimizer.apply_gradients(zip(grads, variables))
  return [v.numpy() for v in variables] + [m.numpy() for m in optimizer.momentums]


@pytest.mark.parametrize('l2', [0.0, 3e-2])
def test_in_place_sgd_is_keras_sgd_on_the_l2_gradient(l2):
  schedule = optimization.cosine_schedule(0.1, 10, 0.01)
  ours = _run(optimization.sgd(schedule, 0.9, l2=l2))
  keras_sgd = _run(keras.optimizers.SGD(schedule, momentum=0.9), l2_in_gradient=l2)
  for a, b in zip(ours, keras_sgd):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_sgd_falls_back_to_keras_for_nesterov_and_no_momentum():
  for kwargs in ({'momentum': 0.9, 'nesterov': True}, {'momentum': 0.0}):
    ours = _run(optimization.SGD(0.05, l2=1e-2, **kwargs))
    keras_sgd = _run(keras.optimizers.SGD(0.05, **kwargs), l2_in_gradient=1e-2)
    for a, b in zip(ours, keras_sgd):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sgd_config_round_trip():
  optimizer = optimization.SGD(0.05, momentum=0.8, l2=4e-5)
  restored = optimization.SGD.from_config(optimizer.get_config())
  assert (restored.l2, restored.momentum) == (4e-5, 0.8)
