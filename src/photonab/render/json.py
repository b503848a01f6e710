"""Every number of every table as strict JSON (the schema: docs/json.md).

Whatever a text view shows (``--rows``, ``--hist-rows``, ``--skip``), the JSON holds
every row of every table. NaN and infinite values are written as ``null``; the count of
NaN photons (``nnan``) is beside every deviation value, so strict parsers (Python's
``json.loads(..., parse_constant=...)``, jq, JavaScript) accept the file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import atomic, seqhis
from ..chase import Chase
from ..comparison import Comparison, format_slice
from ..cuts import LEVELS
from ..errors import InputError
from ..runs import RunComparison
from ..tables import C2_MIN_COUNT, DROPOUT_MIN, RC_BIT, DeviationTable, HistoryTable

#: the version of the document layout (docs/json.md); a reader checks it before reading
SCHEMA = "photonab/2"


def _num(x) -> float | None:
    """A float for JSON: None for NaN and +-inf."""
    x = float(x)
    return x if math.isfinite(x) else None


def _code(c) -> str:
    return f"{int(c):x}"  # hex text: 64-bit codes do not fit a JSON (double) number


#: rows of a table made (and written) at a time: a million-history report is written in
#: bounded memory (docs/json.md, "Large reports")
ROW_CHUNK = 1 << 14


class Rows:
    """The rows of one table of a report, made ROW_CHUNK at a time by ``text(start, stop)``:
    their JSON text, from the table's columns at those rows only (the rows of
    ``dumps(rows)`` without the brackets). write_json streams the text to the file chunk
    by chunk; plain() parses it into the list of row dicts (to_dict)."""

    def __init__(self, n: int, text):
        self.n, self.text = n, text

    def texts(self):
        for start in range(0, self.n, ROW_CHUNK):
            yield self.text(start, min(start + ROW_CHUNK, self.n))


def plain(data):
    """``data`` with every Rows made into its list of row dicts (dicts walked, the rest as is)."""
    if isinstance(data, Rows):
        return [row for text in data.texts() for row in json.loads("[" + text + "]")]
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    return data


# The rows of the tables (history, deviation, and QCF in photonab.qcf) are written as
# text, not as dicts for the json module: a million-history report has 5M rows and about
# 70M floats, and the dicts and the json module's float formatting took most of its time
# (docs/json.md, "Large reports"). The text is what json.dumps writes for those dicts,
# byte for byte (tests/test_tables.py::test_row_text_is_what_json_writes, and
# tests/test_sevt_cli.py::test_sevt_row_text_is_what_json_writes for QCF).


def float_texts(values) -> list[str]:
    """The JSON text of every value of a float array, flattened: repr (as the json module
    writes a float), ``null`` where not finite. Each distinct value (by its bits) is
    formatted once: a record table's values are counts x bin, a few hundred in a chunk."""
    bits = np.ascontiguousarray(values, np.float64).reshape(-1).view(np.uint64)
    distinct, at = np.unique(bits, return_inverse=True)
    texts = [repr(x) if math.isfinite(x) else "null" for x in distinct.view(np.float64).tolist()]
    return np.array(texts, dtype=object)[at.reshape(-1)].tolist()


def string_texts(strings: list[str]) -> list[str]:
    """The JSON text of each string (history labels: printable ASCII, as they are quoted)."""
    joined = "".join(strings)
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return [f'"{s}"' for s in strings]
    return [json.dumps(s) for s in strings]


_BOOL = ("false", "true")


def _history_text(table: HistoryTable, start: int, stop: int) -> str:
    v = table.row_values(np.arange(start, stop))
    a, b = v["a"].tolist(), v["b"].tolist()
    cols = zip(range(start, stop), string_texts(seqhis.labels(v["codes"])), v["codes"].tolist(), a, b,
               table.counted[start:stop].tolist(), *(float_texts(v[k]) for k in ("c2", "ab", "ab_err", "ba", "ba_err")),
               v["nstep"].tolist(), v["dropout"].tolist(), v["level_index"].tolist())
    return ", ".join(
        f'{{"index": {i}, "code": "{c:x}", "label": {lab}, "a": {na}, "b": {nb}, "a-b": {na - nb}, '
        f'"counted": {_BOOL[counted]}, "c2": {c2}, "a/b": {ab}, "a/b_err": {ab_err}, "b/a": {ba}, '
        f'"b/a_err": {ba_err}, "nstep": {nstep}, "dropout": {_BOOL[dropout]}, "level": "{LEVELS[level]}"}}'
        for i, lab, c, na, nb, counted, c2, ab, ab_err, ba, ba_err, nstep, dropout, level in cols)


def history_dict(table: HistoryTable) -> dict:
    rows = Rows(len(table), lambda start, stop: _history_text(table, start, stop))
    return {"table": "history", "level": table.level, "rc": table.rc, "reasons": table.reasons,
            "histories": len(table), "photons_a": table.n_a, "photons_b": table.n_b, "aligned": table.aligned,
            "c2_min_count": C2_MIN_COUNT, "c2sum": _num(table.c2sum), "ndf": table.ndf, "c2p": _num(table.c2p),
            "pvalue": _num(table.pvalue), "c2max": list(table.c2max), "c2_level": LEVELS[table.c2_level_index],
            "dropout_min": DROPOUT_MIN, "dropouts": table.ndropout, "rows": rows}


def _deviation_text(table: DeviationTable, file_rows, start: int, stop: int) -> str:
    rows = np.arange(start, stop)
    v = table.row_values(rows)
    n = stop - start
    fdisc = float_texts(v["fdisc"])
    fdisc = [", ".join(fdisc[3 * k:3 * k + 3]) for k in range(n)]
    worst = np.asarray(v["argmax"], np.int64).tolist()
    cols = zip(rows.tolist(), string_texts(seqhis.labels(v["codes"])), v["codes"].tolist(), v["nitem"].tolist(),
               np.asarray(v["ndisc"], np.int64).tolist(), fdisc, v["nnan"].tolist(),
               *(float_texts(v[k]) for k in ("mx", "mn", "avg")), v["level_index"].tolist(), worst)
    out = [f'{{"index": {i}, "code": "{c:x}", "label": {lab}, "nitem": {nitem}, "ndisc": [{d0}, {d1}, {d2}], '
           f'"fdisc": [{f}], "nnan": {nnan}, "mx": {mx}, "mn": {mn}, "avg": {avg}, "level": "{LEVELS[level]}", '
           f'"worst_photon": {w}'
           for i, lab, c, nitem, (d0, d1, d2), f, nnan, mx, mn, avg, level, w in cols]
    if v["worst_event"] is not None:
        out = [f'{row}, "worst_event": {e}' for row, e in zip(out, np.asarray(v["worst_event"], np.int64).tolist())]
    if table.has_slots:  # record tables: per-slot maxima up to the history's steps
        slots, count = table.slot_block(rows)
        texts, m = float_texts(slots), slots.shape[1]
        out = [f'{row}, "mx_slot": [{", ".join(texts[m * k:m * k + c])}], "slot": {slot}'
               for k, (row, c, slot) in enumerate(zip(out, count.tolist(), v["worst_slot"].tolist()))]
    if file_rows is not None:  # worst_photon counts sliced photons; say the file row too
        out = [f'{row}, "worst_file_row": {file_rows[w] if w >= 0 else -1}' for row, w in zip(out, worst)]
    return "}, ".join(out) + "}" if out else ""


def deviation_dict(table: DeviationTable, file_rows=None) -> dict:
    rows = Rows(len(table), lambda start, stop: _deviation_text(table, file_rows, start, stop))
    return {"table": table.table, "unit": table.unit, "cuts": [float(c) for c in table.cuts.values],
            "level": table.level, "rc": table.rc, "histories": len(table), "nitem": table.nitem_total,
            "ndisc": [int(x) for x in table.ndisc.sum(axis=0)], "nnan": int(table.nnan.sum()),
            "mx": _num(table.mx_total), "rows": rows}


def comparison_dict(cmp: Comparison) -> dict:
    pair = cmp.pair
    return {"schema": SCHEMA, "kind": "comparison", "a": str(pair.a.path), "b": str(pair.b.path),
            "photons": pair.n, "photons_in_files": pair.a.n_total, "msli": format_slice(pair.a.msli),
            "aligned": cmp.aligned, "engine": cmp.engine, "rc": cmp.rc, "rc_bits": dict(RC_BIT),
            "levels": {"history": cmp.history.level, **{t: tab.level for t, tab in cmp.tables.items()}},
            "seconds": {k: _num(v) for k, v in cmp.seconds.items()}, "history": history_dict(cmp.history),
            "deviations": {t: deviation_dict(tab, pair.a.file_rows) for t, tab in cmp.tables.items()},
            "input_changed": list(pair.changed), **analysis_dict(cmp)}


def run_dict(run: RunComparison) -> dict:
    events = [{**e, "c2p": _num(e["c2p"])} for e in run.event_lines()]
    return {"schema": SCHEMA, "kind": "run", "events": events, "photons": sum(c.pair.n for c in run.events),
            "aligned": run.aligned, "rc": run.rc, "rc_bits": dict(RC_BIT),
            "levels": {"history": run.history.level, **{t: tab.level for t, tab in run.tables.items()}},
            "history": history_dict(run.history),
            "deviations": {t: deviation_dict(tab) for t, tab in run.tables.items()},
            "input_changed": [c for e in run.events for c in e.pair.changed], **analysis_dict(run)}


def chase_dict(found: Chase) -> dict:
    return {"schema": SCHEMA, "kind": "chase", "a": str(found.pair.a.path), "b": str(found.pair.b.path),
            "table": found.table, "unit": found.unit, "history": found.history,
            "code": None if found.code is None else _code(found.code), "level": found.level, "found": found.found,
            "pattern": getattr(found, "pattern", None),
            "codes": [_code(c) for c in getattr(found, "codes", ())],
            "photons": [{"index": int(i), "file_index": int(f), "deviation": _num(d),
                         "finite": bool(np.isfinite(d))}
                        for i, f, d in zip(found.index, found.file_index, found.deviation)]}


def dumps(data: dict) -> str:
    """Strict JSON text (no NaN or Infinity tokens: a non-finite float is a bug here).
    Not indented: with ``indent`` the json module encodes in Python, 3-4x slower than its
    C encoder (about 0.1 s for a report of 300 histories; issue 12)."""
    return json.dumps(data, allow_nan=False)


def check_writable(path) -> Path:
    """Fail before any work when a report cannot be written to ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: cannot write the JSON report (it is a directory)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: cannot write the JSON report (folder {parent} does not exist)")
    return path


def _stream(data: dict, write) -> None:
    """Strict JSON of ``data`` passed to ``write`` piece by piece: the document with each
    Rows as a marker string, then in place of each marker its rows, one dumps per chunk
    (the document of dumps(plain(data)), chunks joined by a comma without a space)."""
    streams = []

    def mark(obj):
        if isinstance(obj, Rows):
            streams.append(obj)
            return f"\x00rows{len(streams) - 1}\x00"
        return {k: mark(v) for k, v in obj.items()} if isinstance(obj, dict) else obj

    text = dumps(mark(data))
    for k, rows in enumerate(streams):
        head, text = text.split(dumps(f"\x00rows{k}\x00"), 1)
        write(head + "[")
        for n, chunk in enumerate(rows.texts()):
            write(("," if n else "") + chunk)
        write("]")
    write(text)


def write_json(data: dict, path=None) -> str | None:
    """Strict JSON text of ``data``; with ``path``, written there instead (atomically,
    the rows of big tables streamed in chunks, so memory stays bounded) and None returned."""
    if path is None:
        parts: list[str] = []
        _stream(data, parts.append)
        return "".join(parts)
    try:
        with atomic.atomic_path(path) as tmp, open(tmp, "w", encoding="ascii") as fh:
            _stream(data, fh.write)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the JSON report ({exc.strerror or exc})") from None
    return None


# ---------------------------------------------------------------- analysis tables (docs/json.md)


def materials_dict(table) -> dict:
    """The material table: the history table's keys, rows labelled by material."""
    out = plain(history_dict(table))
    labels = table.labels()
    short = table.labels(abbreviate=True)
    for row, label, abbr in zip(out["rows"], labels, short):
        row["label"] = label
        row["abbreviated"] = abbr
        row["materials"] = [int(k) for k in _material_steps(table.codes[row["index"]])]
    out["table"] = "materials"
    out["names"] = None if table.names is None else list(table.names.names)
    out["names_file"] = None if table.names is None or table.names.path is None else str(table.names.path)
    out["rc_bit"] = RC_BIT["history"]
    return out


def _material_steps(code):
    from ..materials import material_steps
    return material_steps(code)


def migration_dict(table) -> dict:
    """Every kept (A history, B history) pair, and the pairs beyond them summed."""
    la, lb = table.labels_a, table.labels_b
    rows = [{"index": r, "a_code": _code(table.codes_a[r]), "a_label": la[r], "b_code": _code(table.codes_b[r]),
             "b_label": lb[r], "photons": int(table.counts[r]), "first": int(table.first[r])}
            for r in range(len(table))]
    out = {"table": "migration", "photons": table.n, "migrated": table.n_migrated,
           "fraction": _num(table.fraction), "aligned": table.n_aligned,
           "first_migrated": [int(i) for i in table.first_migrated], "pairs": table.n_pairs,
           "other_pairs": int(table.other_pairs), "other_photons": int(table.other_photons),
           "passes": int(table.passes), "rows": rows}
    if table.first_event is not None:  # a run's table: the events of the photon indices
        for row, event in zip(rows, table.first_event):
            row["first_event"] = int(event)
        out["first_migrated_events"] = [int(e) for e in table.first_migrated_event]
    return out


def analysis_dict(result) -> dict:
    """Keys a comparison or run adds with --tables materials, --select and the migration table."""
    out = {}
    materials = getattr(result, "materials", None)
    if materials is not None:
        out["materials"] = materials_dict(materials)
        out["levels"] = {**{"history": result.history.level, "materials": materials.level},
                         **{t: tab.level for t, tab in result.tables.items()}}
        out["rc_bits"] = {**RC_BIT, "materials": RC_BIT["history"]}
    migration = getattr(result, "migration", None)
    if migration is not None:
        out["migration"] = migration_dict(migration)
    if hasattr(result, "select"):
        out["select"] = result.select
    return out


def distribution_dict(dist, pair=None) -> dict:
    """``photonab hist --json``: every bin of every histogram (docs/json.md)."""
    hists = []
    for h in dist.histograms:
        bins = [{**b, "c2": _num(b["c2"])} for b in h.bins()]
        hists.append({"component": h.component, "unit": h.unit, "bins": bins, "nbins": len(bins),
                      "photons_a": h.n_a, "photons_b": h.n_b, "under": list(h.under), "over": list(h.over),
                      "outside": list(h.outside), "shape": h.shape, "cut": h.cut, "c2sum": _num(h.c2sum),
                      "c2n": h.c2n, "ndf": h.ndf, "c2p": _num(h.c2p), "pvalue": _num(h.pvalue)})
    out = {"schema": SCHEMA, "kind": "hist", "history": dist.pattern, "slot": dist.slot,
           "quantity": dist.quantity, "photons_a": dist.n_a, "photons_b": dist.n_b, "c2p": _num(dist.c2p),
           "histograms": hists}
    if pair is not None:
        out = {**out, "a": str(pair.a.path), "b": str(pair.b.path)}
    return out


# ---------------------------------------------------------------- SEvt pairs (docs/json.md, "An SEvt comparison")


def sevt_history_dict(cmp) -> dict:
    """qcf_to_dict's history (every row) with the verdict of the comparison or run ``cmp``."""
    from ..qcf import qcf_to_dict
    from ..tables import DROPOUT_MIN as DROP
    d = qcf_to_dict(cmp.qcf, stream=True)
    d["history"] = {"table": "history", "level": cmp.history_level, "rc": cmp.history_rc, "reasons": cmp.reasons,
                    "c2max": list(cmp.c2max), "c2_level": LEVELS[cmp.c2_level_index], "dropout_min": DROP,
                    "dropouts": cmp.ndropout, **d["history"]}
    return d


def aligned_table_dict(table) -> dict:
    labels, codes, agg = table.labels(), table.aggregate.hex(), table.aggregate
    rows = [{"index": i, "code": codes[i], "label": labels[i], "nitem": int(agg.nitem[i]),
             "ndisc": [int(x) for x in agg.ndisc[i]], "fdisc": [_num(x) for x in table.fdisc[i]],
             "nnan": int(agg.nnan[i]), "mx": _num(table.mx[i]), "mn": _num(table.mn[i]), "avg": _num(table.avg[i]),
             "level": LEVELS[table.level_index[i]], "worst_photon": int(agg.argmax[i])}
            for i in range(len(table))]
    finite = table.mx[np.isfinite(table.mx)]
    return {"table": table.table, "unit": table.unit, "cuts": [float(c) for c in table.cuts.values],
            "level": table.level, "rc": table.rc, "histories": len(table), "nitem": table.nitem_total,
            "ndisc": [int(x) for x in agg.ndisc.sum(axis=0)] if len(table) else [0, 0, 0],
            "nnan": int(agg.nnan.sum()), "mx": _num(finite.max()) if len(finite) else None, "rows": rows}


def alignment_dict(check) -> dict:
    return {"photons": check.n, "aligned": check.n_aligned, "expected": _num(check.expected),
            "possible": check.possible, "score": _num(check.score), "z": _num(check.z), "warn": check.warn,
            "message": check.message}


def photon_chase_dict(found) -> dict:
    labels = found.labels()
    return {"table": found.table, "photons": [
        {"index": int(i), "deviation": _num(d), "finite": bool(np.isfinite(d)), "label": labels[k],
         "code": seqhis.hex128(int(found.lo[k]), int(found.hi[k]))}
        for k, (i, d) in enumerate(zip(found.index, found.deviation))]}


def sevt_comparison_dict(cmp) -> dict:
    from ..aligned import RC_BIT as ALIGNED_RC_BIT
    pair = cmp.pair
    d = sevt_history_dict(cmp)
    al = cmp.aligned
    out = {"schema": SCHEMA, "kind": "sevt_comparison", "layout": d["layout"], "a": str(pair.a.path),
           "b": str(pair.b.path), "photons": pair.n, "photons_in_files": [pair.a.n_total, pair.b.n_total],
           "msli": cmp.msli, "engine": cmp.engine, "flags": d["flags"], "rc": cmp.rc,
           "rc_bits": {"history": RC_BIT["history"], **ALIGNED_RC_BIT}, "levels": cmp.levels,
           "seconds": {k: _num(v) for k, v in cmp.seconds.items()}, "history": d["history"], "hits": d["hits"],
           "meta": d["meta"], "notes": d["notes"], "aligned": None if al is None else al.n_aligned,
           "alignment": None if al is None else alignment_dict(al.check),
           "deviations": {} if al is None else {t: aligned_table_dict(tab) for t, tab in al.tables.items()}}
    if al is not None:
        out["notes"] = list(dict.fromkeys(out["notes"] + list(al.notes)))
        out["worst"] = {t: photon_chase_dict(w) for t, w in al.worst.items() if len(w)}
    return out


def sevt_run_dict(run) -> dict:
    d = sevt_history_dict(run)
    events = [{**e, "c2per": _num(e["c2per"]), "pvalue": _num(e["pvalue"])} for e in run.event_lines()]
    return {"schema": SCHEMA, "kind": "sevt_run", "layout": "sevt", "run": None if run.run is None else str(run.run),
            "events": events, "offsets": list(run.offsets), "photons": run.qcf.n_a, "engine": run.engine,
            "flags": d["flags"], "rc": run.rc, "rc_bits": {"history": RC_BIT["history"]}, "levels": run.levels,
            "history": d["history"], "hits": d["hits"], "notes": d["notes"]}
