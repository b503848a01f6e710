"""photonab: photon-by-photon A/B comparison of optical-photon simulation events.

Typical use::

    import photonab
    pair = photonab.EventPair.open("evt/box/torch/1", "evt/box/torch/-1")
    result = photonab.compare(pair)          # cython engine, all tables
    print(result)                            # history + deviation tables
    result.chase("rpost", "TO BT BR BT SA")  # photons behind a bad row
"""
from .errors import InputError
from .events import Event, EventPair, parse_msli
from . import seqhis

__all__ = ["InputError", "Event", "EventPair", "parse_msli", "seqhis", "compare"]


def __getattr__(name):
    # compare pulls in the engines (and the compiled cyext) only when used
    if name == "compare":
        from .comparison import compare
        return compare
    raise AttributeError(name)
