"""Old home of the plots; kept so that ``photonab.plots`` imports keep working. New code
imports :mod:`photonab.render.plots`."""
from .render.plots import LEVEL_COLOURS, check_plot_path, figure, plot_comparison

__all__ = ["LEVEL_COLOURS", "check_plot_path", "figure", "plot_comparison"]
