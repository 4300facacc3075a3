"""Figures of units, layers and predictions (``imde.viz.plots``) and the unit atlas; matplotlib is imported lazily."""
