"""photonab: photon-by-photon A/B comparison of optical-photon simulation events.

Typical use::

    import photonab
    pair = photonab.EventPair.open("evt/box/torch/1", "evt/box/torch/-1")
    result = photonab.compare(pair)          # cython engine, all tables
    print(result)                            # history + deviation tables
    result.chase("rpost", "TO BT BR BT SA")  # photons behind a bad row
"""
from .errors import InputError

__all__ = ["InputError", "Event", "EventPair", "parse_msli", "seqhis", "compare"]

# what each public name is imported from, on first use: `import photonab` and
# `python -m photonab --help` stay cheap (numpy and the compiled kernels load when needed)
_LAZY = {"Event": "events", "EventPair": "events", "parse_msli": "events", "compare": "comparison"}


def __getattr__(name):
    import importlib
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "seqhis":
        return importlib.import_module(".seqhis", __name__)
    raise AttributeError(f"module 'photonab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
