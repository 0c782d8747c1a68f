"""Scripts that make the fixtures: the shapes dataset and the trained detector."""
