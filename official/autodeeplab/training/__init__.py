"""Training loops: the bilevel search and the retrain, with their schedules and strategies."""
