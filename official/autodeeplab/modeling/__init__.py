"""Keras 3 layers: the 8 candidate ops, the search supernet and the retrain network."""
