"""Figures (``imde.viz.plots``) and the HTML report (``imde.viz.report``); matplotlib is imported lazily."""
