"""The supernet's layer loop with a written-out backward pass that recomputes each layer.

Why not `tf.recompute_grad` inside `tf.foldl`: TensorFlow's gradient of a while loop that reads
row l of stacked [L, n] weights keeps a copy of all the weights for the backward loop (the
foldl's TensorList), starts the weights' gradient from a materialised all-zero copy and adds each
layer's rows into it. TensorFlow's allocator trace of one 65 px search step (L=12, F=8) showed
those three weight-sized lists alive together at the step's peak, larger than the weights
themselves. Here the backward loop is ours: for l = L-1 .. 0 it recomputes layer l from its stored
input states under one GradientTape, takes the vector-Jacobian product and writes row l of each
per-layer gradient into a TensorArray, so the only weight-sized tensors are the gradient rows and
their stacked result. The forward loop stores each layer's input states (one per level; small
beside the weights) and nothing else.

The chain rule over the loop: layer l maps (S_l, S_{l-1}) to S_{l+1}, so the gradient reaching
S_l is the sum of what layer l passes back through its first input and what layer l+1 passed
back through its second; the loop carries both.
"""
from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

# layer_fn(prev states, prev_prev states, this layer's rows, shared tensors) -> next states, each
# argument a nested structure (tf.nest) of tensors; the next states have prev's structure.
LayerFn = Callable[[Any, Any, Any, Any], Any]


def run_layers(layer_fn: LayerFn, prev, prev_prev, per_layer, shared):
  """Applies `layer_fn` once per row of `per_layer`, recomputing each layer when differentiated.

  Args:
    layer_fn: one layer; must return tensors with the structure and shapes (static where known)
      of `prev`.
    prev, prev_prev: the states entering the first layer (S_0 and S_{-1}), same structure.
    per_layer: a structure of tensors [L, ...]; layer l receives row l of each.
    shared: a structure of tensors every layer receives whole (their gradients are summed over
      the layers).

  Returns:
    S_L, the states leaving the last layer, in `prev`'s structure.
  """
  structure = (prev, prev_prev, per_layer, shared)
  flat_per_layer = tf.nest.flatten(per_layer)
  num_layers = flat_per_layer[0].shape[0]
  shapes = [state.shape for state in tf.nest.flatten(prev)]
  unflatten = lambda flat: tf.nest.pack_sequence_as(structure, list(flat))
  row = lambda tensors, l: tf.nest.map_structure(lambda tensor: tensor[l], tensors)

  def call_layer(prev, prev_prev, rows, shared):
    states = tf.nest.flatten(layer_fn(prev, prev_prev, rows, shared))
    for state, shape in zip(states, shapes):
      state.set_shape(shape)
    return states

  @tf.custom_gradient
  def run(*flat):
    prev, prev_prev, per_layer, shared = unflatten(flat)
    # Slot 0 holds S_{-1}, slot l + 1 the input state S_l of layer l.
    stored = [tf.TensorArray(state.dtype, size=num_layers + 1, element_shape=shape,
                             clear_after_read=False).write(0, state)
              for state, shape in zip(tf.nest.flatten(prev_prev), shapes)]
    as_prev = lambda states: tf.nest.pack_sequence_as(prev, list(states))

    def forward(l, states, previous, stored):
      stored = [array.write(l + 1, state) for array, state in zip(stored, states)]
      return (l + 1, call_layer(as_prev(states), as_prev(previous), row(per_layer, l), shared),
              states, stored)

    _, last, _, stored = tf.while_loop(
        lambda l, *_: l < num_layers, forward,
        (tf.constant(0), tf.nest.flatten(prev), tf.nest.flatten(prev_prev), stored),
        parallel_iterations=1)

    def gradient(*upstream):
      upstream = [tf.zeros_like(state) if g is None else g for g, state in zip(upstream, last)]
      row_grads = [tf.TensorArray(tensor.dtype, size=num_layers, element_shape=tensor.shape[1:])
                   for tensor in flat_per_layer]

      def backward(l, to_next, to_prev, row_grads, shared_grads):
        inputs_prev = [array.read(l + 1) for array in stored]
        inputs_prev_prev = [array.read(l) for array in stored]
        rows = row(per_layer, l)
        sources = inputs_prev + inputs_prev_prev + tf.nest.flatten(rows) + tf.nest.flatten(shared)
        with tf.GradientTape() as tape:
          tape.watch(sources)
          states = call_layer(as_prev(inputs_prev), as_prev(inputs_prev_prev), rows, shared)
        grads = tape.gradient(states, sources, output_gradients=to_next,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        d_prev, d_prev_prev, d_rows, d_shared = map(tf.nest.flatten, unflatten(grads))
        to_next = [a + b for a, b in zip(d_prev, to_prev)]
        row_grads = [array.write(l, d) for array, d in zip(row_grads, d_rows)]
        shared_grads = [a + b for a, b in zip(shared_grads, d_shared)]
        return l - 1, to_next, d_prev_prev, row_grads, shared_grads

      # One iteration at a time: the recomputation of layer l does not depend on the gradient
      # carried from layer l + 1, so a lowered loop would otherwise run several layers' forward
      # passes ahead, holding all their activations.
      flat_shared = tf.nest.flatten(shared)
      _, to_first, to_before_first, row_grads, shared_grads = tf.while_loop(
          lambda l, *_: l >= 0, backward,
          (tf.constant(num_layers - 1), upstream, [tf.zeros_like(s) for s in upstream],
           row_grads, [tf.zeros_like(s) for s in flat_shared]), parallel_iterations=1)
      return (*to_first, *to_before_first, *[array.stack() for array in row_grads],
              *shared_grads)

    return tuple(last), gradient

  return tf.nest.pack_sequence_as(prev, list(run(*tf.nest.flatten(structure))))
