"""Fig. 8: learning curves of ``a3c`` for learning rates 1e-2, 1e-3, 1e-4 and 1e-5 (N = 20,
M = 3). Non-learned solvers given in ``--solvers`` appear as reference levels.

Claim (Sec. V): 1e-3 converges to the lowest system cost.

    python -m studies.learning_rate [--quick] [--rates 1e-2,1e-3,1e-4,1e-5] [--hyper learning_rate]
"""

from __future__ import annotations

import sys

import numpy as np

from .claims import METRICS, Claim, Verdict, difference, evaluations, means_table
from .common import LEARNING_RATE, Study, UsageError, add_network_arguments, float_list
from .figures import draw_curves

PAPER_BEST = 1e-3


def best_rate_verdicts(values, solver: str, best: float = PAPER_BEST) -> list:
    """Verdicts of "``best`` gives the lowest final metric": decided on the paired difference of
    ``best`` to the runner-up when it has the lowest mean (holds when that difference is resolved
    below 0), else to the rate of lowest mean (does not hold when resolved above 0)."""
    runs = values[values["solver"] == solver]
    verdicts = []
    for metric, name in METRICS:
        means = runs.groupby("learning_rate")[metric].mean().dropna().sort_values()
        if not any(np.isclose(rate, best) for rate in means.index):
            verdicts.append(Verdict(name, None, False, f"learning rate {best:g} not run"))
            continue
        ranking = list(means.index)
        chosen = next(rate for rate in ranking if np.isclose(rate, best))
        ranked = ", ".join(f"{rate:g}: {means[rate]:.4g}" for rate in ranking)
        holds = ranking[0] == chosen
        if len(ranking) == 1:
            verdicts.append(Verdict(name, holds, False, f"only one rate with values: {ranked}"))
            continue
        rival = ranking[1] if holds else ranking[0]
        paired = difference(runs, "learning_rate", chosen, rival, metric)
        resolved = paired.resolved and (paired.mean < 0) == holds
        verdicts.append(Verdict(name, holds, resolved,
                                f"lowest first: {ranked}; {paired.text(lambda rate: f'lr {rate:g}')}"))
    return verdicts


class LearningRateStudy(Study):
    curves = True
    name = "learning_rate"
    title = "Fig. 8: impact of the learning rate"
    solvers = ("a3c",)
    label_columns = ("learning_rate",)
    full = LEARNING_RATE

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rates", type=float_list, default=[1e-2, 1e-3, 1e-4, 1e-5],
                            help="learning rates (default 1e-2,1e-3,1e-4,1e-5)")
        parser.add_argument("--hyper", default="learning_rate",
                            help="name of the learned solvers' learning-rate hyper-parameter (default learning_rate)")
        add_network_arguments(parser)

    def plan(self, args) -> list:
        if any(not rate > 0 for rate in args.rates):  # the solver checks its own upper bound
            raise UsageError(f"argument --rates: learning rates must be > 0, got {args.rates}")
        runs = []
        for solver in args.solvers:
            probe = self.run(args, solver, 0, devices=args.devices, sbs=args.sbs)
            rates = args.rates if probe.learned else [None]
            for rate in rates:
                hyper = {} if rate is None else {args.hyper: rate}
                runs += [self.run(args, solver, seed, devices=args.devices, sbs=args.sbs, hyper=hyper,
                                  labels={"learning_rate": rate}) for seed in range(args.seeds)]
        return runs

    def draw(self, table, stem) -> None:
        table = table.copy()
        table["setting"] = [f"{solver} lr={rate:g}" if np.isfinite(rate) else solver
                            for solver, rate in zip(table["solver"], table["learning_rate"].astype(float))]
        draw_curves(table, stem, self.title, hue="setting")

    def claims(self, table) -> tuple:
        values = evaluations(table)
        learned = list(dict.fromkeys(table.loc[table["phase"] == "train", "solver"]))
        claims = [Claim(f"learning rate {PAPER_BEST:g} is best ({solver})", best_rate_verdicts(values, solver))
                  for solver in learned] or [Claim(f"learning rate {PAPER_BEST:g} is best: no learned solver ran", [])]
        curve_notes = []
        last = table[(table["phase"] == "train") & (table["metric"] == "system_cost")]
        if len(last):
            last = last[last["episode"] == last.groupby(["solver", "learning_rate"])["episode"].transform("max")]
            for (solver, rate), group in last.groupby(["solver", "learning_rate"]):
                curve_notes.append(f"- last learning-curve point of {solver} at lr={rate:g}: system cost "
                                   f"{group['value'].mean():.4g} (episode {int(group['episode'].max())})")
        shown = values.assign(learning_rate=values["learning_rate"].map(
            lambda rate: "" if not np.isfinite(rate) else f"{rate:g}"))
        return claims, means_table(shown, ["solver", "learning_rate"]), curve_notes


STUDY = LearningRateStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
