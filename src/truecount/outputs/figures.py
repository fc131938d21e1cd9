"""Figures of a fitted run: what the posterior says, how it got there, and whether to trust it.

Every function takes the :class:`xarray.DataTree` written by :func:`truecount.inference.fitter.fit` (as
saved in a run's ``posterior.nc``) and returns a :class:`matplotlib.figure.Figure` built with the
object-oriented API only: no pyplot state and no global backend, so figures can be made headless and
from several threads at once. :func:`figure_png` renders one to PNG bytes.

- :func:`posterior_enrolments`: posterior of the true total against the claims and the capacity.
- :func:`timeline`: cumulative true enrolments day by day, with the capacity ceiling and the claims.
- :func:`prior_posterior`: prior and posterior of each model parameter.
- :func:`diagnostics`: rank plots per chain and the energy plot of the sampler.
- :func:`predictive_check`: replicated claims and evidence against what was observed.

A ``stamp`` (for instance "UNCONVERGED: ...") is drawn on every figure twice: as a red line at the
top and as large, faint red text across the figure, so that it survives cropping and screenshots.
Numbers shown here are computed from the draws only; nothing is re-estimated.
"""

from __future__ import annotations

import io
import itertools
import math
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import arviz_stats as azs
import matplotlib.dates as mdates
import numpy as np
import xarray as xr
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory
from scipy.stats import binom, rankdata

from truecount.inference.results import channel_kinds, format_number, own_channels, round_to_sd
from truecount.quantities import QUANTITIES, SAMPLED

#: The model parameters shown by :func:`prior_posterior` and :func:`diagnostics` by default.
PARAMETERS = SAMPLED
#: Axis label (with unit) of each quantity.
UNITS = {q.name: q.label for q in QUANTITIES if q.label}
#: Quantities drawn on a logarithmic axis.
LOG_SCALE = frozenset(q.name for q in QUANTITIES if q.log_scale)

_WIDTH = 8.2  # inches: 900 px at the PNG resolution
_DPI = 110
_SAMPLE_DIMS = ("chain", "draw")
_POSTERIOR = "#1f6fb4"
_PRIOR = "#7f7f7f"
_CLAIM_COLORS = ("#c0392b", "#e67e22", "#8e44ad", "#16a085", "#d35400", "#2c3e50")


# ---------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------

def _new_figure(height: float) -> Figure:
    """A figure 900 px wide at :data:`_DPI` with constrained layout."""
    return Figure(figsize=(_WIDTH, height), dpi=_DPI, layout="constrained")


_STAMP_SIZE = 11.0  # points: the stamp's line at the top


def _stamp_top(fig: Figure, stamp: str) -> tuple[list[str], float]:
    """The stamp's top lines (wrapped to the figure's width) and the figure fraction they take."""
    width, height = fig.get_size_inches()
    per_line = max(20, int(0.95 * width * 72.0 / (0.62 * _STAMP_SIZE)))
    lines = [stamp] if len(stamp) <= per_line else textwrap.wrap(stamp, width=per_line)
    return lines, min(0.3, (len(lines) * 1.25 + 0.6) * _STAMP_SIZE / 72.0 / height)


def _add_stamp(fig: Figure, stamp: str | None, title: str | None = None, title_size: float = 12.0) -> None:
    """Mark ``fig`` with ``stamp``: a red line at the top and large faint red text across it.

    Every figure function ends here. ``title``, if given, becomes the figure title (suptitle). With a
    stamp, the top line and the title get their own strip (the constrained layout keeps the axes
    below it), and the diagonal text is sized to fit the figure's diagonal.
    """
    if not stamp:
        if title:
            fig.suptitle(title, fontsize=title_size)
        return
    width, height = fig.get_size_inches()
    top_lines, strip = _stamp_top(fig, stamp)
    fig.text(0.5, 1.0 - 0.15 * strip, "\n".join(top_lines), ha="center", va="top", color="#c00000",
             fontsize=_STAMP_SIZE, fontweight="bold", zorder=10)
    reserved = strip
    if title:
        # A title placed by hand gets no room from the constrained layout: reserve it here.
        fig.suptitle(title, y=1.0 - strip, va="top", fontsize=title_size)
        reserved += (title.count("\n") + 1) * 1.3 * title_size / 72.0 / height
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0.0, 0.0, 1.0, 1.0 - min(reserved, 0.45)))
    angle = math.degrees(math.atan2(height, width))
    diagonal_points = math.hypot(width, height) * 72.0
    lines = textwrap.wrap(stamp, width=max(24, math.ceil(len(stamp) / 2))) or [stamp]
    longest = max(len(line) for line in lines)
    size = max(12.0, min(60.0, 0.85 * diagonal_points / (0.62 * longest)))
    fig.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", rotation=angle,
             rotation_mode="anchor", multialignment="center", color="#d00000", alpha=0.25,
             fontsize=size, fontweight="bold", zorder=20)


def _title(tree: xr.DataTree, what: str) -> str:
    """Figure title naming the case and spec of the run."""
    case = tree.attrs.get("case_id", "")
    spec = tree.attrs.get("spec_id", "")
    where = f"case {case}" if case else ""
    if spec:
        where = f"{where}, spec {spec}" if where else f"spec {spec}"
    return f"{what} ({where})" if where else what


def _group(tree: xr.DataTree, name: str) -> xr.Dataset | None:
    """Group ``name`` of ``tree`` as a dataset, or None if the tree has no such group."""
    return tree[name].to_dataset() if name in tree.children else None


def _flat(da: xr.DataArray) -> np.ndarray:
    """All draws of a scalar quantity as a 1-D float array (NaN and inf removed)."""
    values = np.asarray(da.values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _elements(da: xr.DataArray) -> Iterator[tuple[str, dict[str, int], xr.DataArray]]:
    """Split ``da`` into its scalar elements: (label, positions, draws with only sample dims)."""
    dims = [str(d) for d in da.dims if d not in _SAMPLE_DIMS]
    if not dims:
        yield str(da.name), {}, da
        return
    for positions in itertools.product(*(range(da.sizes[d]) for d in dims)):
        index = dict(zip(dims, positions, strict=True))
        names = [str(da[d].values[i]) if d in da.coords else str(i) for d, i in index.items()]
        yield f"{da.name} [{', '.join(names)}]", index, da.isel(index)


def _edges(samples: Sequence[np.ndarray], log: bool, bins: int = 50,
           extra: Sequence[float] = ()) -> np.ndarray:
    """Common histogram edges covering the central 99.8% of each sample set (and ``extra``).

    On a log axis only positive values count and the edges are spaced evenly in log space.
    """
    lows, highs = [], []
    for s in samples:
        s = s[s > 0] if log else s
        if s.size:
            lo, hi = np.quantile(s, [0.001, 0.999])
            lows.append(float(lo))
            highs.append(float(hi))
    for x in extra:
        if np.isfinite(x) and (x > 0 or not log):
            lows.append(float(x))
            highs.append(float(x))
    if not lows:
        return np.geomspace(1.0, 10.0, bins + 1) if log else np.linspace(0.0, 1.0, bins + 1)
    lo, hi = min(lows), max(highs)
    if log:
        if hi <= lo:
            lo, hi = lo / 1.5, hi * 1.5
        return np.geomspace(lo, hi, bins + 1)
    if hi <= lo:
        pad = 0.5 if lo == 0 else abs(lo) * 0.1
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, bins + 1)


def _density(values: np.ndarray, edges: np.ndarray, log: bool) -> np.ndarray:
    """Histogram density over ``edges``; per unit of log10 when ``log`` (so shapes read true)."""
    if log:
        values = values[values > 0]
    inside = values[(values >= edges[0]) & (values <= edges[-1])]
    if inside.size == 0:
        return np.zeros(edges.size - 1)
    counts, _ = np.histogram(inside, bins=edges)
    widths = np.diff(np.log10(edges)) if log else np.diff(edges)
    return np.asarray(counts / (values.size * widths), dtype=float)


def _rounded(x: float, sd: float) -> str:
    return format_number(round_to_sd(float(x), sd))


def _fmt(x: float) -> str:
    """A count or value in a readable form: 49,000; 1,964; 0.31; 2.1e-05."""
    if not np.isfinite(x):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1 or x == 0:
        return f"{x:.3g}"
    return f"{x:.2g}"


def _grid(fig: Figure, panels: int, ncols: int) -> list[Axes]:
    """``panels`` axes on a grid of ``ncols`` columns; unused cells removed."""
    nrows = max(1, math.ceil(panels / ncols))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel().tolist()
    for ax in axes[panels:]:
        ax.remove()
    return list(axes[:panels])


def _no_data(ax: Axes, text: str) -> None:
    """Mark an axes as having nothing to show."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------------
# 1. Posterior of the true total
# ---------------------------------------------------------------------------------------------------

def posterior_enrolments(tree: xr.DataTree, mass: float = 0.9, stamp: str | None = None) -> Figure:
    """Posterior of the true number of enrolments against the claims and the capacity ceiling.

    Parameters
    ----------
    tree
        A fitted run (groups ``posterior``, optionally ``prior`` and ``constant_data``).
    mass
        Probability mass of the shaded equal-tailed interval.
    stamp
        Warning drawn across the figure, or None.

    Returns
    -------
    Figure
        Density of ``true_enrolments_total`` per decade on a log axis, the prior as a faint outline,
        the median and the ``mass`` interval, each published claim and the median total capacity.
    """
    posterior = tree["posterior"].to_dataset()
    prior = _group(tree, "prior")
    constant = _group(tree, "constant_data")
    post = _flat(posterior["true_enrolments_total"])
    pri = _flat(prior["true_enrolments_total"]) if prior is not None and \
        "true_enrolments_total" in prior else np.empty(0)
    claims: list[tuple[str, float]] = []
    if constant is not None and "claim_value" in constant:
        cv = constant["claim_value"]
        ids = cv["claim"].values if "claim" in cv.coords else np.arange(cv.size)
        claims = [(str(k), float(v)) for k, v in zip(ids, np.ravel(cv.values), strict=True)
                  if np.isfinite(v) and v > 0]
    ceiling, ceiling_sd = float("nan"), 0.0
    if "capacity" in posterior:
        cap = posterior["capacity"]
        cap = cap.sum([d for d in cap.dims if d not in _SAMPLE_DIMS])
        ceiling = float(np.median(_flat(cap)))
        ceiling_sd = float(np.std(_flat(cap), ddof=1)) if _flat(cap).size > 1 else 0.0

    fig = _new_figure(4.8)
    ax = fig.subplots()
    positive = post[post > 0]
    marks = [v for _, v in claims] + ([ceiling] if np.isfinite(ceiling) and ceiling > 0 else [])
    edges = _edges([positive, pri], log=True, bins=60, extra=marks)
    legend: list[tuple[Artist, str]] = []
    if pri.size:
        ax.stairs(_density(pri, edges, True), edges, color=_PRIOR, alpha=0.7, linewidth=1.2)
        legend.append((Line2D([], [], color=_PRIOR, alpha=0.7), "prior"))
    if positive.size:
        lo, med, hi = np.quantile(post, [(1 - mass) / 2, 0.5, (1 + mass) / 2])
        ax.stairs(_density(post, edges, True), edges, fill=True, color=_POSTERIOR, alpha=0.45)
        ax.stairs(_density(post, edges, True), edges, color=_POSTERIOR, linewidth=1.2)
        legend.append((Patch(color=_POSTERIOR, alpha=0.45), "posterior"))
        if hi > 0:
            ax.axvspan(max(lo, edges[0]), hi, color=_POSTERIOR, alpha=0.12, linewidth=0)
        # Rounded as in the report's tables, so the figure and the headline read the same.
        sd = float(np.std(post, ddof=1)) if post.size > 1 else 0.0
        legend.append((Patch(color=_POSTERIOR, alpha=0.12),
                       f"{mass:.0%} interval: {_rounded(lo, sd)} to {_rounded(hi, sd)}"))
        if med > 0:
            ax.axvline(med, color=_POSTERIOR, linewidth=2.2)
        legend.append((Line2D([], [], color=_POSTERIOR, linewidth=2.2),
                       f"median: {_rounded(med, sd)}"))
    else:
        _no_data(ax, "no positive posterior draws of the total")
    if np.isfinite(ceiling) and ceiling > 0:
        ax.axvline(ceiling, color="black", linestyle="--", linewidth=1.5)
        legend.append((Line2D([], [], color="black", linestyle="--"),
                       f"capacity ceiling (median): {_rounded(ceiling, ceiling_sd)}"))
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for i, (claim_id, value) in enumerate(sorted(claims, key=lambda c: c[1])):
        color = _CLAIM_COLORS[i % len(_CLAIM_COLORS)]
        ax.axvline(value, color=color, linewidth=1.8)
        ax.text(value, 0.98 - 0.22 * (i % 2), f" {claim_id}\n published {_fmt(value)}", transform=top,
                ha="left", va="top", color=color, fontsize=9, fontweight="bold",
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1] * 1.6 if claims else edges[-1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("true enrolments (people, log scale)")
    ax.set_ylabel("density (per factor of 10)")
    ax.set_title(_title(tree, "How many really enrolled"), fontsize=12)
    ax.legend([h for h, _ in legend], [t for _, t in legend], loc="best", fontsize=9, framealpha=0.85)
    ax.grid(axis="x", which="major", alpha=0.3)
    _add_stamp(fig, stamp)
    return fig


# ---------------------------------------------------------------------------------------------------
# 2. Timeline
# ---------------------------------------------------------------------------------------------------

def _days(da: xr.DataArray) -> np.ndarray:
    """The ``day`` coordinate as datetime64 (days), falling back to positions if not dates."""
    values = da["day"].values if "day" in da.coords else np.arange(da.sizes["day"])
    try:
        return np.asarray(values, dtype="datetime64[D]")
    except (ValueError, TypeError):
        return np.arange(len(values))


def _day_span(x: np.ndarray, i: int) -> tuple[float, float]:
    """Start and end of day ``i`` on the timeline's x axis (half a day either side of its tick)."""
    centre = float(mdates.date2num(x[i])) if np.issubdtype(x.dtype, np.datetime64) else float(x[i])
    return centre - 0.5, centre + 0.5


def _positive(x: np.ndarray) -> np.ndarray:
    """``x`` with non-positive values replaced by NaN (for log axes)."""
    x = np.asarray(x, dtype=float)
    return np.where(x > 0, x, np.nan)


def timeline(tree: xr.DataTree, mass: float = 0.9, stamp: str | None = None) -> Figure:
    """Cumulative true enrolments over the days, with the capacity ceiling and the claims.

    Parameters
    ----------
    tree
        A fitted run with ``posterior.true_enrolments`` (channel, day), ``posterior.capacity``
        (channel) and ``constant_data`` (``open_hours``, ``claim_exposure``, ``claim_value``).
    mass
        Probability mass of the shaded equal-tailed band.
    stamp
        Warning drawn across the figure, or None.

    Returns
    -------
    Figure
        Median and ``mass`` band of the cumulative true enrolments at the end of each day, the
        median cumulative capacity (the total capacity spread over the days by open hours) and each
        claim at the last day it covers, on a log y axis.
    """
    posterior = tree["posterior"].to_dataset()
    constant = _group(tree, "constant_data")
    true = posterior["true_enrolments"]
    true = true.sum([d for d in true.dims if d not in (*_SAMPLE_DIMS, "day")])
    cumulative = true.cumsum("day").transpose(*_SAMPLE_DIMS, "day")
    flat = np.asarray(cumulative.values, dtype=float).reshape(-1, cumulative.sizes["day"])
    lo, med, hi = np.quantile(flat, [(1 - mass) / 2, 0.5, (1 + mass) / 2], axis=0)
    x = _days(posterior["true_enrolments"])

    fig = _new_figure(4.8)
    ax = fig.subplots()
    ax.set_yscale("log")
    ax.fill_between(x, _positive(lo), _positive(hi), color=_POSTERIOR, alpha=0.25, linewidth=0,
                    label=f"true enrolments, {mass:.0%} interval")
    ax.plot(x, _positive(med), color=_POSTERIOR, linewidth=2.2, marker="o", markersize=4,
            label="true enrolments, median")
    values = [v for v in (lo, med, hi) for v in v.tolist() if v > 0]

    if constant is not None and "open_hours" in constant:
        hours = constant["open_hours"]
        daily = hours.sum([d for d in hours.dims if d != "day"]).values
        for n, closed in enumerate(np.flatnonzero(daily <= 0).tolist()):
            ax.axvspan(*_day_span(x, closed), color="0.92", linewidth=0,
                       label="lines closed" if n == 0 else None)
    if constant is not None and "open_hours" in constant and "capacity" in posterior:
        hours = constant["open_hours"]
        total = hours.sum("day")
        share = (hours / total.where(total > 0)).fillna(0.0)
        capacity = posterior["capacity"]
        form = np.isinf(capacity)  # an online form: no ceiling; the lines' is drawn
        per_day = (capacity.where(~form, 0.0) * share).sum([d for d in share.dims if d != "day"])
        ceiling = per_day.cumsum("day").median(_SAMPLE_DIMS).transpose("day").values
        label = ("capacity ceiling of the lines (median, cumulative; an online form has none)"
                 if bool(form.any()) else "capacity ceiling (median, cumulative)")
        ax.plot(x, _positive(ceiling), color="black", linestyle="--", linewidth=1.5, label=label)
        values += [v for v in ceiling.tolist() if v > 0]

    if constant is not None and "claim_exposure" in constant and "claim_value" in constant:
        exposure = constant["claim_exposure"]
        any_channel = (exposure > 0).any([d for d in exposure.dims if d not in ("claim", "day")])
        covered = any_channel.transpose("claim", "day").values
        claim_ids = constant["claim_value"]["claim"].values if "claim" in constant["claim_value"].coords \
            else np.arange(covered.shape[0])
        claim_values = np.ravel(constant["claim_value"].values).astype(float)
        for i, (claim_id, value) in enumerate(zip(claim_ids, claim_values, strict=True)):
            days = np.flatnonzero(covered[i])
            if days.size == 0 or not value > 0:
                continue
            color = _CLAIM_COLORS[i % len(_CLAIM_COLORS)]
            ax.plot([x[days[-1]]], [value], linestyle="none", marker="D", markersize=9, color=color,
                    markeredgecolor="black", label=f"claim {claim_id}: {_fmt(value)}")
            ax.annotate(f"{claim_id}\n{_fmt(value)}", (x[days[-1]], value), xytext=(-8, 0),
                        textcoords="offset points", ha="right", va="center", fontsize=9, color=color,
                        fontweight="bold")
            values.append(value)

    if values:
        ax.set_ylim(min(values) / 2.0, max(values) * 2.5)
    if np.issubdtype(np.asarray(x).dtype, np.datetime64):
        # One tick per day (every few days on long drives); never hours, whatever the span.
        locator = mdates.DayLocator(interval=max(1, math.ceil(len(x) / 10)))
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        pad = np.timedelta64(12, "h")
        ax.set_xlim(x[0] - pad, x[-1] + pad)
    ax.set_xlabel("day (values at the end of each day)")
    ax.set_ylabel("cumulative enrolments (people, log scale)")
    ax.set_title(_title(tree, "True enrolments over time"), fontsize=12)
    ax.grid(which="major", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9,
               frameon=False)
    _add_stamp(fig, stamp)
    return fig


# ---------------------------------------------------------------------------------------------------
# 3. Prior and posterior of the parameters
# ---------------------------------------------------------------------------------------------------

def _panels(ds: xr.Dataset, var_names: Sequence[str] | None, kinds: dict[str, str] | None = None
            ) -> list[tuple[str, str, dict[str, int], xr.DataArray]]:
    """(variable, label, positions, draws) for each scalar element of the named variables in ``ds``.

    A per-channel parameter gets panels only for the channels whose kind it describes
    (``kinds``: channel -> kind, :func:`truecount.inference.results.channel_kinds`).
    """
    names = [n for n in (var_names if var_names is not None else PARAMETERS) if n in ds]
    panels = []
    for name in names:
        da = ds[name]
        da = own_channels(da, name, kinds or {})
        panels += [(name, label, index, x) for label, index, x in _elements(da)]
    return panels


def prior_posterior(tree: xr.DataTree, var_names: Sequence[str] | None = None,
                    stamp: str | None = None) -> Figure:
    """Prior and posterior density of each model parameter, one small panel per parameter element.

    Parameters
    ----------
    tree
        A fitted run with ``posterior`` and (ideally) ``prior`` groups.
    var_names
        Parameters to show; default :data:`PARAMETERS`. Names missing from the posterior are
        skipped; per-channel parameters get one panel per channel.
    stamp
        Warning drawn across the figure, or None.

    Returns
    -------
    Figure
        A grid of histograms (density) with the prior as a grey outline and the posterior filled;
        parameters in :data:`LOG_SCALE` on a log axis.
    """
    posterior = tree["posterior"].to_dataset()
    prior = _group(tree, "prior")
    panels = _panels(posterior, var_names, channel_kinds(tree))
    ncols = 3 if len(panels) > 4 else max(1, len(panels))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = _new_figure(1.2 + 2.1 * nrows)
    if not panels:
        _no_data(fig.subplots(), "none of the requested parameters is in the posterior")
        _add_stamp(fig, stamp, _title(tree, "Prior and posterior of the parameters"))
        return fig
    for ax, (name, label, index, da) in zip(_grid(fig, len(panels), ncols), panels, strict=True):
        log = name in LOG_SCALE
        post = _flat(da)
        pri = np.empty(0)
        if prior is not None and name in prior and set(index) <= set(prior[name].dims):
            pri = _flat(prior[name].isel(index))
        edges = _edges([post, pri], log=log, bins=40)
        if pri.size:
            ax.stairs(_density(pri, edges, log), edges, color=_PRIOR, linewidth=1.2)
        ax.stairs(_density(post, edges, log), edges, fill=True, color=_POSTERIOR, alpha=0.5)
        if log:
            ax.set_xscale("log")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(bottom=0)
        ax.set_yticks([])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(UNITS.get(name, name), fontsize=8)
        ax.tick_params(labelsize=8)
    handles: list[Artist] = [Line2D([], [], color=_PRIOR, linewidth=1.2), Patch(color=_POSTERIOR, alpha=0.5)]
    fig.legend(handles, ["prior", "posterior"], loc="outside lower center", ncols=2, fontsize=9,
               frameon=False)
    fig.supylabel("density", fontsize=10)
    _add_stamp(fig, stamp, _title(tree, "Prior and posterior of the parameters"))
    return fig


# ---------------------------------------------------------------------------------------------------
# 4. Sampler diagnostics
# ---------------------------------------------------------------------------------------------------

def _rhat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of (chain, draw) draws; NaN when undefined (constant, 1 chain)."""
    if draws.ndim != 2 or draws.shape[0] < 2 or draws.shape[1] < 4 or np.ptp(draws) == 0:
        return float("nan")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.asarray(azs.rhat(draws, chain_axis=0, draw_axis=1), dtype=float).ravel()[0])


def _rank_panel(ax: Axes, draws: np.ndarray, name: str, element: str) -> None:
    """Rank plot: per chain, histogram of the ranks of its draws within the pooled sample.

    Well-mixed chains give flat lines inside the grey band (95% of bins of a uniform histogram).
    """
    nchains, ndraws = draws.shape
    if np.ptp(draws) == 0:
        _no_data(ax, "constant across draws")
        ax.set_title(f"{name}\n{element}", fontsize=9)
        return
    ranks = rankdata(draws.ravel(), method="average").reshape(draws.shape)
    nbins = int(max(5, min(30, ndraws // 40)))
    edges = np.linspace(0.5, draws.size + 0.5, nbins + 1)
    expected = ndraws / nbins
    low, high = binom.ppf([0.025, 0.975], ndraws, 1.0 / nbins)
    ax.axhspan(low, high, color="0.85", linewidth=0)
    ax.axhline(expected, color="0.4", linewidth=0.8, linestyle=":")
    for c in range(nchains):
        counts, _ = np.histogram(ranks[c], bins=edges)
        ax.stairs(counts, edges, color=f"C{c % 10}", linewidth=1.2, baseline=None)
    rhat = _rhat(draws)
    detail = ", ".join(part for part in (element, f"R-hat {rhat:.3f}" if np.isfinite(rhat) else "") if part)
    ax.set_title(f"{name}\n{detail}", fontsize=9,
                 color="#c00000" if np.isfinite(rhat) and rhat > 1.01 else "black")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(high, float(np.max([np.histogram(ranks[c], bins=edges)[0].max()
                                            for c in range(nchains)]))) * 1.15)
    ax.tick_params(labelsize=7)
    ax.set_xticks([])


def _energy_panel(ax: Axes, energy: np.ndarray) -> None:
    """Energy plot: marginal energy against the energy transitions, with E-BFMI per chain."""
    energy = np.asarray(energy, dtype=float)
    if energy.ndim == 1:
        energy = energy[np.newaxis, :]
    marginal = (energy - energy.mean()).ravel()
    transition = np.diff(energy, axis=1).ravel()
    var = energy.var(axis=1)
    bfmi = np.where(var > 0, np.square(np.diff(energy, axis=1)).mean(axis=1) / np.where(var > 0, var, 1),
                    np.nan)
    marginal, transition = marginal[np.isfinite(marginal)], transition[np.isfinite(transition)]
    if marginal.size < 2 or transition.size < 1:
        _no_data(ax, "too few draws for an energy plot")
        ax.set_title("energy", fontsize=9)
        return
    edges = _edges([marginal, transition], log=False, bins=40)
    ax.stairs(_density(marginal, edges, False), edges, fill=True, color="#e67e22", alpha=0.5,
              label="marginal energy")
    ax.stairs(_density(transition, edges, False), edges, color="#2c3e50", linewidth=1.4,
              label="energy transition")
    low = float(np.nanmin(bfmi)) if np.isfinite(bfmi).any() else float("nan")
    ax.set_title(f"energy\nE-BFMI {low:.2f} at lowest", fontsize=9,
                 color="#c00000" if np.isfinite(low) and low < 0.3 else "black")
    ax.set_yticks([])
    ax.set_xlabel("energy minus mean", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", frameon=False)


def diagnostics(tree: xr.DataTree, var_names: Sequence[str] | None = None,
                stamp: str | None = None) -> Figure:
    """Sampler diagnostics: rank plots per chain for each parameter and the energy plot.

    Parameters
    ----------
    tree
        A fitted run with ``posterior`` and ``sample_stats`` (``energy``, ``diverging``) groups.
    var_names
        Parameters to show; default :data:`PARAMETERS`. Missing names are skipped; per-channel
        parameters get one panel per channel.
    stamp
        Warning drawn across the figure, or None.

    Returns
    -------
    Figure
        One rank-plot panel per parameter element (one line per chain, grey band = 95% range of a
        uniform histogram, rank-normalised R-hat in the title) and an energy panel (marginal energy
        against transition energy, lowest E-BFMI in the title); divergences in the figure title.
    """
    posterior = tree["posterior"].to_dataset()
    stats = _group(tree, "sample_stats")
    panels = _panels(posterior, var_names, channel_kinds(tree))
    energy = stats["energy"].transpose(*_SAMPLE_DIMS).values if stats is not None and \
        "energy" in stats else None
    count = len(panels) + (energy is not None)
    ncols = 3 if count > 4 else max(1, count)
    nrows = max(1, math.ceil(count / ncols))
    fig = _new_figure(1.3 + 1.9 * nrows)
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else None
    title = _title(tree, "Sampler diagnostics")
    if divergences is not None:
        title += f": {divergences} divergent transition{'s' if divergences != 1 else ''}"
    title += ("\nrank plots: each chain's draws ranked among all chains; flat inside the grey band"
              " = well mixed")
    if count == 0:
        _no_data(fig.subplots(), "no parameters or energy to show")
    else:
        axes = _grid(fig, count, ncols)
        for ax, (name, label, _index, da) in zip(axes, panels, strict=False):
            draws = np.asarray(da.transpose(*_SAMPLE_DIMS).values, dtype=float)
            _rank_panel(ax, draws, name, label[len(name):].strip(" []"))
        if energy is not None:
            _energy_panel(axes[-1], energy)
        nchains = posterior.sizes.get("chain", 1)
        handles: list[Artist] = [Line2D([], [], color=f"C{c % 10}") for c in range(nchains)]
        handles.append(Patch(color="0.85"))
        fig.legend(handles, [f"chain {c}" for c in range(nchains)] + ["95% range if uniform"],
                   loc="outside lower center", ncols=min(nchains + 1, 6), fontsize=8, frameon=False)
        fig.supylabel("draws per rank bin", fontsize=9)
    _add_stamp(fig, stamp, title, title_size=10.5)
    return fig


# ---------------------------------------------------------------------------------------------------
# 5. Posterior predictive check
# ---------------------------------------------------------------------------------------------------

def _rounded_edges(edges: np.ndarray, step: float) -> np.ndarray:
    """Log-spaced ``edges`` moved to half-way between multiples of ``step`` (claims are rounded).

    Without this, bins narrower than the rounding step are empty or hold one value each and the
    histogram shows a comb instead of a density.
    """
    if not step > 0:
        return edges
    snapped = (np.floor(edges / step - 0.5) + 0.5) * step
    snapped[-1] = (np.ceil(edges[-1] / step - 0.5) + 0.5) * step
    snapped = np.unique(snapped[snapped > 0])
    if snapped.size < 2:
        return edges
    return np.asarray(snapped, dtype=float)


def predictive_check(tree: xr.DataTree, stamp: str | None = None,
                     group: str = "posterior_predictive") -> Figure:
    """Posterior (or prior) predictive check of each claim and each evidence item.

    Parameters
    ----------
    tree
        A fitted run with ``posterior_predictive`` (``claim_value``, ``evidence_reports_failed``),
        ``constant_data.claim_value`` and ``observed_data.evidence_reports_failed``.
    stamp
        Warning drawn across the figure, or None.
    group
        ``"posterior_predictive"`` or ``"prior_predictive"`` (the prior predictive check: what
        the priors alone say a campaign would publish and report).

    Returns
    -------
    Figure
        Per claim, the replicated published values (log axis) with the observed claim marked; per
        evidence item, the replicated number of reports describing a failure (bars) with the
        observed count marked. Each panel states the share of replications at or above the
        observation.
    """
    predictive = _group(tree, group)
    constant = _group(tree, "constant_data")
    observed = _group(tree, "observed_data")
    panels: list[tuple[str, str, xr.DataArray, float]] = []
    if predictive is not None and "claim_value" in predictive and constant is not None \
            and "claim_value" in constant:
        for (label, _, da), obs in zip(_elements(predictive["claim_value"]),
                                    np.ravel(constant["claim_value"].values), strict=True):
            panels.append(("claim", label.replace("claim_value [", "claim ").rstrip("]"), da, float(obs)))
    if predictive is not None and "evidence_reports_failed" in predictive and observed is not None \
            and "evidence_reports_failed" in observed:
        for (label, _, da), obs in zip(_elements(predictive["evidence_reports_failed"]),
                                    np.ravel(observed["evidence_reports_failed"].values), strict=True):
            panels.append(("evidence", label.replace("evidence_reports_failed [", "evidence ").rstrip("]"),
                           da, float(obs)))
    reports = np.ravel(constant["evidence_reports"].values) if constant is not None and \
        "evidence_reports" in constant else None
    rounding = np.ravel(constant["claim_rounding"].values).astype(float) if constant is not None and \
        "claim_rounding" in constant else None

    ncols = min(2, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = _new_figure(1.3 + 2.7 * nrows)
    which = "Prior" if group == "prior_predictive" else "Posterior"
    title = _title(tree, f"{which} predictive check: replicated vs observed")
    if not panels:
        _no_data(fig.subplots(), f"no {which.lower()} predictive draws to check")
        _add_stamp(fig, stamp, title)
        return fig
    claim_index = evidence_index = 0
    for ax, (kind, label, da, obs) in zip(_grid(fig, len(panels), ncols), panels, strict=True):
        rep = _flat(da)
        share = float(np.mean(rep >= obs)) if rep.size else float("nan")
        note = ""
        if kind == "claim":
            step = float(rounding[claim_index]) if rounding is not None and claim_index < rounding.size \
                else 0.0
            claim_index += 1
            positive = rep[rep > 0]
            edges = _rounded_edges(_edges([positive], log=True, bins=40, extra=[obs]), step)
            ax.stairs(_density(positive, edges, True), edges, fill=True, color=_POSTERIOR, alpha=0.5)
            ax.set_xscale("log")
            ax.set_xlim(edges[0] / 1.2, edges[-1] * 1.2)
            ax.set_xlabel("replicated published value (people, log scale)", fontsize=9)
            ax.set_ylabel("density (per factor of 10)", fontsize=9)
            zeros = float(np.mean(rep <= 0)) if rep.size else 0.0
            if zeros > 0:
                note = f"\n{zeros:.0%} of replications are 0 (not shown)"
        else:
            n = int(reports[evidence_index]) if reports is not None and evidence_index < reports.size \
                else None
            evidence_index += 1
            values = rep.astype(int)
            top = max(int(values.max()) if values.size else 0, int(obs), n or 0)
            counts = np.bincount(values[values >= 0], minlength=top + 1)
            ax.bar(np.arange(top + 1), counts / max(values.size, 1), width=0.85, color=_POSTERIOR,
                   alpha=0.6)
            ax.set_xlim(-0.6, top + 0.6)
            ax.set_xlabel("reports describing a failure" + (f" (of {n})" if n is not None else ""),
                          fontsize=9)
            ax.set_ylabel("share of replications", fontsize=9)
            if top <= 20:
                ax.set_xticks(np.arange(top + 1))
        ax.axvline(obs, color="#c0392b", linewidth=2.2)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{label}\nobserved {_fmt(obs)} (red); P(rep. \u2265 obs.) = {share:.2f}{note}",
                     fontsize=9.5)
        ax.tick_params(labelsize=8)
    _add_stamp(fig, stamp, title)
    return fig


# ---------------------------------------------------------------------------------------------------
# 6. Rendering
# ---------------------------------------------------------------------------------------------------

def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes at 110 dpi (900 px wide for this module's figures).

    Parameters
    ----------
    fig
        Any matplotlib figure; it is left open and unchanged apart from being drawn.

    Returns
    -------
    bytes
        The PNG file's content.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def forest_plot(rows: Sequence[Any], stamp: str | None = None) -> Figure:
    """Intervals of true enrolments and of each claim's inflation under every alternative.

    ``rows`` are :class:`truecount.workflows.sensitivity.Row`, the baseline first.
    """
    claims = list(rows[0].claims)
    fig = Figure(figsize=(8.2, 1.2 + 0.45 * len(rows)), layout="constrained")
    axes = fig.subplots(1, 1 + len(claims), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))[::-1]
    panels = [("true enrolments (people)", [r.true_enrolments for r in rows])]
    panels += [(f"inflation of {c}", [r.claims[c]["inflation"] for r in rows]) for c in claims]
    for ax, (title, intervals) in zip(axes, panels, strict=True):
        for yi, iv, row in zip(y, intervals, rows, strict=True):
            color = "#4477aa" if row.gate_passed else "#b00020"
            ax.plot([iv.lower, iv.upper], [yi, yi], color=color, linewidth=2)
            ax.plot([iv.median], [yi], "o", color=color)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, [r.name for r in rows], fontsize=8)
    for value in (c["value"] for c in rows[0].claims.values()):
        axes[0].axvline(value, color="0.5", linestyle=":", linewidth=1)
    mass = rows[0].true_enrolments.mass

    handles = [Line2D([], [], color="#4477aa", marker="o", label="passed the diagnostics gate"),
               Line2D([], [], color="#b00020", marker="o",
                      label="failed the gate: do not quote"),
               Line2D([], [], color="0.5", linestyle=":", label="the claims")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle(f"Sensitivity: medians and {mass:.0%} intervals"
                 + (f"\n{stamp}" if stamp else ""), fontsize=10)
    return fig
