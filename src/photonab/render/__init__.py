"""Renderers: the model (tables, comparison, chase, runs) as text, JSON and pictures.

Each module here imports the model and never the reverse (the model's ``render()`` and
``to_json()`` import them inside the method):

- :mod:`photonab.render.text`: the tables as text, in the original's layout
- :mod:`photonab.render.json`: every number of every table as strict JSON (docs/json.md)
- :mod:`photonab.render.plots`: a picture of the tables (matplotlib, object-oriented API)
"""
