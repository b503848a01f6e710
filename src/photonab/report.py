"""Old home of the text rendering, the JSON writer and :class:`Chase`; kept so that
``photonab.report`` imports keep working. New code imports :mod:`photonab.render.text`,
:mod:`photonab.render.json` and :mod:`photonab.chase`."""
from .chase import Chase
from .comparison import format_slice
from .render.json import write_json
from .render.text import LABEL_WIDTH, render_comparison, render_deviation, render_history, render_run

__all__ = ["Chase", "format_slice", "write_json", "LABEL_WIDTH", "render_comparison", "render_deviation",
           "render_history", "render_run"]
