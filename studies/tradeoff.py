"""The Lyapunov trade-off (not a figure of the paper): how the drift-plus-penalty weight V of
P2 (20) trades energy efficiency against backlog, at N = 20, M = 3.

Drift-plus-penalty theory bounds the time-average penalty within O(1/V) of its optimum and the
time-average backlog by O(V). The study sweeps V (a ``Scenario`` field, the label column ``V``
of the table) for the non-learned solvers (default ``bcd`` and ``greedy``) and, at a few V only,
for learned solvers named in ``--solvers`` (each trained per V, at the sweep budget), and checks
both rates on the measured numbers: the fitted exponent of the energy gap
eta_EE(V) - eta_EE(V_max) and of the mean backlog against V on log axes, each with a 95%
stratified bootstrap interval. It also computes which V the numbers support as the default.

    python -m studies.tradeoff [--quick] [--V-values 1,3,10,30,100,300,1000] [--solvers bcd,greedy,a3c]
                               [--learned-V-values 10,100,1000] [--devices 20] [--sbs 3]
"""

from __future__ import annotations

import sys

import numpy as np

from dtnopt.config import Scenario
from dtnopt.registry import resolve as resolve_solver

from .claims import CONFIDENCE, Claim, Verdict, episode_cube, evaluations, means_table, stratified_bootstrap
from .common import SWEEP, Study, UsageError, add_network_arguments, float_list, listed
from .figures import draw_tradeoff

V_DEFAULT = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
V_QUICK = (1.0, 10.0, 100.0, 1000.0)
LEARNED_V_DEFAULT = (10.0, 100.0, 1000.0)
V_MAX = 1e9
"""The largest V a ``Scenario`` accepts; V = 0, which it also accepts, has no place on log axes."""

MODEL_DEFAULT_V = 100.0
"""The default V of docs/model.md section 5 ("the energy term matters without swamping the queues")."""

FLAT_PER_DECADE = 0.05
"""eta_EE is taken as settled once a tenfold V improves it by less than this fraction."""

TOLERANCE = 0.5
"""A fitted exponent "follows the theory" when it lies within this distance of the theory's."""

ENERGY, BACKLOG = "energy_efficiency_j_per_mbit", "backlog_mbit"
ENERGY_NAME, BACKLOG_NAME = "eta_EE (J/Mbit)", "backlog (Mbit)"


# --- fitted exponents ---------------------------------------------------------------------------

def _loglog_slope(log_v: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Least-squares slope of log(levels) against ``log_v``, one per row of ``levels``; NaN for
    a row with a level that is not positive (no logarithm)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(levels > 0, np.log(np.where(levels > 0, levels, 1.0)), np.nan)
    centred = log_v - log_v.mean()
    return ((logs - logs.mean(axis=1, keepdims=True)) @ centred) / (centred @ centred)


def exponent(values, solver: str, metric: str, baseline: str | None = None, smallest: float = 0.0,
             x: str = "V") -> dict:
    """The fitted exponent k of ``metric`` ~ x^k (x the swept column, V by default) for ``solver``
    over its values of x >= ``smallest``,
    with its 95% stratified bootstrap interval, episodes paired across V by replicate and episode
    index. ``baseline="largest"`` fits the gap metric(V) - metric(V_max) over the V values below
    V_max, ``"smallest"`` the excess metric(V) - metric(V_min) over those above V_min. A resample
    whose gap is not positive at every V has no exponent; ``undefined`` is their share.
    Returns {estimate, low, high, undefined, settings (the fitted x), means, replicates}."""
    runs = values[(values["solver"] == solver) & (values[x] >= smallest)]
    settings = sorted(runs[x].dropna().unique())
    means = runs.groupby(x)[metric].mean().to_dict()
    fitted = {"largest": settings[:-1], "smallest": settings[1:]}.get(baseline, settings)
    result = {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "undefined": 1.0,
              "settings": fitted, "means": means, "replicates": int(runs["seed"].nunique())}
    if len(fitted) < 2 or not all(np.isfinite(means.get(v, np.nan)) for v in settings):
        return result
    log_v = np.log(np.asarray(fitted, dtype=float))
    wide = runs.set_index(["seed", "evaluation_seed", x])[metric].unstack(x)[settings].reset_index()
    drawn = []

    def statistic(points):
        if baseline == "largest":
            levels = points[:, :-1] - points[:, -1:]
        elif baseline == "smallest":
            levels = points[:, 1:] - points[:, :1]
        else:
            levels = points
        slopes = _loglog_slope(log_v, levels)
        drawn.append(slopes)
        return slopes

    estimate, low, high, _ = stratified_bootstrap(episode_cube(wide, settings), statistic)
    result.update(estimate=estimate, low=low, high=high, undefined=float(np.mean(~np.isfinite(drawn[-1]))))
    return result


def _interval(fit: dict) -> str:
    return f"{fit['estimate']:.3g} [{fit['low']:.3g}, {fit['high']:.3g}]"


def _levels(fit: dict, unit: str = "") -> str:
    return ", ".join(f"V={v:g}: {fit['means'][v]:.4g}{unit}" for v in sorted(fit["means"]))


def _missing(fit: dict) -> str:
    """Why a fit has no exponent although it has V values: a mean that is not a number (e.g. no bit
    served in any episode, so no eta_EE) or a gap that is not positive."""
    if not all(np.isfinite(mean) for mean in fit["means"].values()):
        return "no value at some V (nothing served): " + _levels(fit)
    return "the gap is not positive at every V: " + _levels(fit)


def _defined(fit: dict) -> bool:
    """Enough replicates, and the exponent defined in all but the interval's tail of resamples."""
    return fit["replicates"] >= 2 and fit["undefined"] <= (1 - CONFIDENCE) / 2


def _undefined_note(fit: dict) -> str:
    return (f"; no exponent in {fit['undefined']:.0%} of resamples (the gap is not positive at every V)"
            if fit["undefined"] > 0 else "")


def sign_verdict(name: str, fit: dict, growing: bool, theory: float) -> Verdict:
    """"The quantity grows (shrinks) with V": the sign of the fitted exponent, resolved when its
    interval excludes 0."""
    if not np.isfinite(fit["estimate"]):
        if len(fit["settings"]) < 2 or not all(np.isfinite(mean) for mean in fit["means"].values()):
            return Verdict(name, None, False, _missing(fit) if len(fit["settings"]) >= 2 else "too few values of V")
        return Verdict(name, False, False, _missing(fit))
    holds = fit["estimate"] > 0 if growing else fit["estimate"] < 0
    resolved = _defined(fit) and (fit["low"] > 0 or fit["high"] < 0)
    return Verdict(name, holds, resolved, f"exponent {_interval(fit)} over V={_vs(fit)} (theory {theory:+g}); "
                                          f"means {_levels(fit)}{_undefined_note(fit)}")


def rate_verdict(name: str, fit: dict, theory: float) -> Verdict:
    """"The exponent is the theory's": holds when the whole interval lies within ``TOLERANCE`` of
    it, does not hold when the whole interval lies outside, else not resolved."""
    if not np.isfinite(fit["estimate"]):
        return Verdict(name, None, False, _missing(fit) if len(fit["settings"]) >= 2 else "too few values of V")
    band = (theory - TOLERANCE, theory + TOLERANCE)
    holds = band[0] <= fit["estimate"] <= band[1]
    inside = band[0] <= fit["low"] and fit["high"] <= band[1]
    outside = fit["high"] < band[0] or fit["low"] > band[1]
    resolved = _defined(fit) and (inside if holds else outside)
    return Verdict(name, holds, resolved, f"exponent {_interval(fit)} over V={_vs(fit)}, theory {theory:+g} "
                                          f"(within {TOLERANCE:g}){_undefined_note(fit)}")


def _vs(fit: dict) -> str:
    return ",".join(f"{v:g}" for v in fit["settings"])


def flat_beyond(values, solver: str, from_v: float = MODEL_DEFAULT_V) -> Verdict:
    """"Beyond ``from_v``, a tenfold V improves eta_EE by less than ``FLAT_PER_DECADE``": the
    improvement per decade 1 - 10^k, k the exponent of eta_EE over the V values >= ``from_v``."""
    fit = exponent(values, solver, ENERGY, smallest=from_v)
    if not np.isfinite(fit["estimate"]):
        return Verdict(ENERGY_NAME, None, False, f"fewer than two values of V >= {from_v:g}")
    gain = [1 - 10 ** fit[key] for key in ("estimate", "high", "low")]  # low exponent, high gain
    holds = gain[0] < FLAT_PER_DECADE
    resolved = _defined(fit) and (gain[2] < FLAT_PER_DECADE if holds else gain[1] > FLAT_PER_DECADE)
    return Verdict(ENERGY_NAME, holds, resolved,
                   f"gain per decade {gain[0]:.1%} [{gain[1]:.1%}, {gain[2]:.1%}] over V={_vs(fit)} "
                   f"(limit {FLAT_PER_DECADE:.0%}); means {_levels(fit)}")


def supported_default(values, solver: str) -> tuple:
    """(V*, reason): the smallest swept V from which on every further step of V improves eta_EE by
    less than ``FLAT_PER_DECADE`` per decade (on the means) while the backlog still grows up to the
    largest V; V* None when eta_EE still improves faster at the last step."""
    runs = values[values["solver"] == solver]
    energy = runs.groupby("V")[ENERGY].mean().sort_index()
    backlog = runs.groupby("V")[BACKLOG].mean().sort_index()
    settings = list(energy.index)
    gains = [1 - (energy[b] / energy[a]) ** (1 / np.log10(b / a)) for a, b in zip(settings, settings[1:])]
    steps = ", ".join(f"{a:g}->{b:g}: {gain:.1%}" for a, b, gain in zip(settings, settings[1:], gains))
    for index, start in enumerate(settings[:-1]):
        if all(gain < FLAT_PER_DECADE for gain in gains[index:]) and backlog.iloc[-1] > backlog[start]:
            return start, (f"eta_EE gain per decade {steps}; backlog {backlog[start]:.4g} Mbit at V={start:g}, "
                           f"{backlog.iloc[-1]:.4g} at V={settings[-1]:g}")
    return None, f"eta_EE gain per decade {steps}"


# --- the study ----------------------------------------------------------------------------------

class TradeoffStudy(Study):
    name = "tradeoff"
    title = "The Lyapunov trade-off: eta_EE and backlog vs V (not in the paper)"
    solvers = ("bcd", "greedy")
    label_columns = ("V",)
    full = SWEEP

    def add_arguments(self, parser) -> None:
        parser.add_argument("--V-values", dest="V_values", type=float_list, default=None,
                            help="drift-plus-penalty weights V, Mbit^2/J, at least 3, in (0, 1e9] "
                                 f"(default {listed(V_DEFAULT)}; --quick {listed(V_QUICK)})")
        parser.add_argument("--learned-V-values", dest="learned_V_values", type=float_list, default=None,
                            help="the V values (among --V-values) at which learned solvers are trained and scored "
                                 f"(default {listed(LEARNED_V_DEFAULT)})")
        add_network_arguments(parser)

    def resolve(self, args) -> None:
        super().resolve(args)
        values = args.V_values or list(V_QUICK if args.quick else V_DEFAULT)
        bad = [v for v in values if not 0 < v <= V_MAX]
        if bad:
            raise UsageError(f"argument --V-values: each V must be in (0, {V_MAX:g}] (the Scenario's range; "
                             f"V > 0 for the log axes), got {bad[0]:g}")
        args.V_values = sorted(set(values))
        if len(args.V_values) < 3:
            raise UsageError("argument --V-values: at least 3 distinct values (the energy gap is fitted on two or "
                             f"more below the largest), got {listed(args.V_values)}")
        learned = sorted(set(args.learned_V_values or LEARNED_V_DEFAULT))
        if any(resolve_solver(solver)[0].learned for solver in args.solvers):
            outside = [v for v in learned if v not in args.V_values]
            if outside:
                raise UsageError(f"argument --learned-V-values: each must be one of --V-values ({listed(args.V_values)}), "
                                 f"got {outside[0]:g}")
        args.learned_V_values = learned

    def plan(self, args) -> list:
        runs = []
        for solver in args.solvers:
            swept = args.learned_V_values if resolve_solver(solver)[0].learned else args.V_values
            runs += [self.run(args, solver, seed, devices=args.devices, sbs=args.sbs, labels={"V": v},
                              scenario={"V": v}) for v in swept for seed in range(args.seeds)]
        return runs

    def draw(self, table, stem) -> None:
        draw_tradeoff(table, stem, self.title)

    def claims(self, table) -> tuple:
        values = evaluations(table)
        claims, notes = [], [
            "- The energy gap is eta_EE(V) - eta_EE(V_max), the largest V standing in for the optimum; each exponent "
            "is the least-squares slope on log axes of the per-V means, its 95% interval from the stratified "
            "bootstrap (replicates, then episodes, paired across V). An exponent \"follows the theory\" when its "
            f"whole interval lies within {TOLERANCE:g} of it, and does not when its whole interval lies outside."]
        for solver in dict.fromkeys(values["solver"]):
            settings = sorted(values.loc[values["solver"] == solver, "V"].unique())
            large = settings[len(settings) // 2:] if len(settings) >= 4 else settings
            gap = exponent(values, solver, ENERGY, baseline="largest")
            backlog = exponent(values, solver, BACKLOG)
            at_large = exponent(values, solver, BACKLOG, smallest=large[0])
            excess = exponent(values, solver, BACKLOG, baseline="smallest")
            claims += [
                Claim(f"the energy gap shrinks with V ({solver})", [sign_verdict(ENERGY_NAME, gap, False, -1)]),
                Claim(f"the energy gap shrinks like 1/V: exponent -1 ({solver})",
                      [rate_verdict(ENERGY_NAME, gap, -1)]),
                Claim(f"the backlog grows with V ({solver})", [sign_verdict(BACKLOG_NAME, backlog, True, +1)]),
                Claim(f"at large V (V >= {large[0]:g}) the backlog grows like V: exponent +1 ({solver})",
                      [rate_verdict(BACKLOG_NAME, at_large, +1)]),
                Claim(f"the backlog above its level at V = {settings[0]:g} grows like V: exponent +1 ({solver})",
                      [rate_verdict(BACKLOG_NAME, excess, +1)]),
                Claim(f"beyond V = {MODEL_DEFAULT_V:g} a tenfold V improves eta_EE by less than "
                      f"{FLAT_PER_DECADE:.0%} ({solver})", [flat_beyond(values, solver)]),
            ]
        notes += default_notes(values) + departure_notes(values)
        trained = table[(table["phase"] == "eval") & table["episode"].notna()]
        for solver, rows in trained.groupby("solver", sort=False):
            notes.append(f"- {solver} is trained anew at each of its V ({listed(sorted(rows['V'].unique()))}) with "
                         f"{int(rows['episode'].max())} training episodes, far below the shipped policy's budget: "
                         "its points show the trade-off of that budget's policies, not of the method.")
        shown = values.assign(V=values["V"].map(lambda v: f"{v:g}"))
        return claims, means_table(shown, ["solver", "V"]), notes


def default_notes(values) -> list:
    """Which V the numbers support as the default, per solver, beside docs/model.md's V = 100."""
    lines = [f"- **Default V supported by the numbers** (the smallest swept V beyond which a tenfold V improves "
             f"eta_EE by less than {FLAT_PER_DECADE:.0%}, on the means, while the backlog still grows; docs/model.md "
             f"uses V = {MODEL_DEFAULT_V:g}):"]
    for solver in dict.fromkeys(values["solver"]):
        chosen, reason = supported_default(values, solver)
        largest = values.loc[values["solver"] == solver, "V"].max()
        verdict = (f"V* = {chosen:g}" if chosen is not None
                   else f"none up to V = {largest:g}: eta_EE still improves by {FLAT_PER_DECADE:.0%} or more per decade")
        lines.append(f"  - {solver}: {verdict} ({reason}).")
    return lines


def departure_notes(values) -> list:
    """Where and why the model departs from the drift-plus-penalty rates, with the numbers."""
    devices = int(values["devices"].iloc[0])
    scenario = Scenario(devices=devices, sbs=int(values["sbs"].iloc[0]))
    notes = []
    for solver in dict.fromkeys(values["solver"]):
        runs = values[values["solver"] == solver]
        smallest = runs["V"].min()
        local = runs.loc[runs["V"] == smallest, "mean_local_backlog_mbit"].mean()
        notes.append(
            f"- Backlog offset ({solver}): at V = {smallest:g} the local queues already hold {local:.4g} Mbit, "
            f"{local / devices:.3g} Mbit per device. With the perturbation (19) on, the per-bit service weight is "
            "(Q^l - Psi_max)/s^2, so a device is served only once its queue passes Psi_max (20-30 Mbit at the "
            "defaults): the queues settle around Psi_max before V matters, the backlog is an offset plus a part "
            "that grows with V, and its log-log slope over all V is below the +1 of the theory, which bounds the "
            "growth, not the level.")
        stability = runs.groupby("V")["stable"].mean()
        unstable = stability[stability < 1]
        if len(unstable):
            shown = ", ".join(f"V={v:g}: {share:.0%} stable" for v, share in unstable.items())
            notes.append(
                f"- Stability ({solver}): {shown}; every other V kept every queue under the cap "
                f"({scenario.queue_cap / 1e6:g} Mbit) in every episode. Service is capped (a device computes at most "
                f"tau f^l_max / c = {scenario.local_capacity_bits / 1e6:g} Mbit per slot against "
                f"{scenario.arrival_mean / 1e6:g} Mbit of mean arrivals, and a station's band is shared), so a "
                "large V that saves energy by serving slowly lets queues pass the cap within an episode: "
                "the O(V) bound is then no longer a stable operating point.")
        else:
            notes.append(f"- Stability ({solver}): every queue stayed under the cap ({scenario.queue_cap / 1e6:g} Mbit) "
                         "in every episode at every V.")
    for solver in dict.fromkeys(values["solver"]):
        energy = values[values["solver"] == solver].groupby("V")[ENERGY].mean().sort_index()
        if len(energy) >= 3:
            first, second, last = energy.index[0], energy.index[1], energy.index[-1]
            notes.append(
                f"- Energy gap ({solver}): eta_EE changes by {energy[second] / energy[first] - 1:+.1%} from "
                f"V = {first:g} to {second:g} and by {energy[last] / energy[second] - 1:+.1%} from there to "
                f"V = {last:g}. While V E_tol is small beside the drift terms (docs/model.md section 5: negligible at "
                "V = 10), V changes few decisions and the gap to V_max stays nearly flat, which pulls its fitted "
                "exponent towards 0; the O(1/V) of the theory bounds the gap to the optimum once the energy term "
                "acts. Where eta_EE still falls steeply at the largest V, that V is no stand-in for the optimum "
                "either.")
    notes.append(
        "- The penalty is the energy alone: with eta_hat = 0 (docs/model.md section 5) V weighs energy (J) against "
        "queue drift (Mbit^2) only, and eta_EE falls with V because the energy per slot falls while stable queues "
        "serve what arrives. The gap is measured against the largest V, not the true optimum, which makes the "
        "fitted exponent of the gap steeper than the true one near V_max.")
    return notes


STUDY = TradeoffStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
