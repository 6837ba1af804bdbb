"""Table cells and verdicts shared by every report: percentages, values with their interval,
the best value of a column in bold, the best phone-probe layer of a row, and the two ways a
claim is judged (against a spread, or by non-overlapping intervals)."""

from __future__ import annotations


def pct(x: float | None, digits: int = 1, missing: str = "-") -> str:
    """A fraction as a percentage with ``digits`` decimals (``missing`` for None)."""
    return missing if x is None else f"{100 * x:.{digits}f}"


def with_ci(value: float, ci: list[float] | None, missing: str = "–") -> str:
    """``12.3 (10.1–14.5)``: a percentage with its 95 % interval when there is one."""
    if ci is None:
        return pct(value, missing=missing)
    return (f"{pct(value, missing=missing)} ({pct(ci[0], missing=missing)}–"
            f"{pct(ci[1], missing=missing)})")


def bold_best(rows: list[list[str]], col: int, lower_is_better: bool) -> None:
    """Mark the best number of column ``col`` in bold (in place; cells that do not start
    with a number are skipped)."""
    values = []
    for row in rows:
        try:
            values.append(float(row[col].split()[0]))
        except (ValueError, IndexError):
            values.append(None)
    valid = [v for v in values if v is not None]
    if not valid:
        return
    best = min(valid) if lower_is_better else max(valid)
    for row, v in zip(rows, values):
        if v == best:
            row[col] = f"**{row[col]}**"


def best_phone_layer(r: dict, split: str = "test") -> tuple[dict | None, dict | None]:
    """A row's phone-probe results on ``split``: (the best layer, or the log-mel floor when
    it beats every layer; the weighted sum of layers)."""
    fr = r.get(f"frames_{split}")
    if not fr:
        return None, None
    s = fr["summary"]
    best = s.get("log_mel") if "log_mel" in s and s["best"]["layer"] == "log-mel" else s["best"]
    return best, s.get("weighted")


def spread_verdict(diff: float, tolerance: float) -> str:
    """``holds`` / ``does not hold`` when the difference (positive = the claim's direction)
    exceeds ``tolerance``, else ``not resolved``."""
    if diff > tolerance:
        return "holds"
    return "does not hold" if diff < -tolerance else "not resolved (within the spread)"


def interval_verdict(a: float, a_ci, b: float, b_ci, higher_is_better: bool) -> str:
    """``holds`` when ``a`` beats ``b`` with non-overlapping 95 % intervals, ``reversed``
    when ``b`` beats ``a`` that way, else ``not resolved`` (the intervals overlap)."""
    if a_ci is None or b_ci is None:
        return "not resolved (no interval)"
    if higher_is_better:
        a_ci, b_ci = [-x for x in reversed(a_ci)], [-x for x in reversed(b_ci)]
    if a_ci[1] < b_ci[0]:
        return "holds"
    if b_ci[1] < a_ci[0]:
        return "reversed"
    return "not resolved (intervals overlap)"


def frame_encoder_note(payload: dict, rows: str) -> str:
    """One sentence naming a study's frame encoder when it is not the recipe's log-mel
    ``transformer`` (``--frame-encoder``): ``rows`` says which rows it is in; empty else."""
    enc = payload.get("frame_encoder", "transformer")
    if enc == "transformer":
        return ""
    what = (f"a randomly initialised transformers {enc} model of the study's size"
            if enc in ("wav2vec2", "hubert", "wavlm")
            else f"the pretrained checkpoint `{enc}`")
    return (f" Frame encoder of the {rows}: {what}, reading the waveform (20 ms frames), "
            f"instead of the recipe's log-mel transformer.")
