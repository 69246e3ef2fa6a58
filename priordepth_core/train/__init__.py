"""Training: typed configs, the model wrapper with selectable pose sources, the objective and the loop."""
