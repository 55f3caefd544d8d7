"""Fig. 5: system cost vs the number of SBSs M (1..5), for N = 20 and N = 40.

The full scheme is ``--scheme`` (default ``a3c``, the paper's; ``bcd`` needs no training).
Claims (Sec. V): at N = 40 the cost decreases as SBSs are added; at N = 20 it barely changes.

    python -m studies.sbs [--quick] [--scheme bcd] [--sbs-values 1,2,3,4,5] [--devices-values 20,40]
"""

from __future__ import annotations

import sys

import numpy as np

from .claims import METRICS, Claim, Verdict, evaluations, means_table, monotone, trend
from .common import SWEEP, Study, integer_list
from .figures import draw_sweep


def barely_matters(values, small: int, large: int, solver: str) -> list:
    """Verdicts of "at N=small the SBS count matters much less than at N=large": the change of
    the fitted line over the range of M at N=small is under half of the one at N=large."""
    small_trend = trend(values, "sbs", {"solver": solver, "devices": small})
    large_trend = trend(values, "sbs", {"solver": solver, "devices": large})
    span = values["sbs"].max() - values["sbs"].min()
    verdicts = []
    for metric, name in METRICS:
        slope, low, high, _ = small_trend[metric]
        large_slope = large_trend[metric][0]
        if not (np.isfinite(slope) and np.isfinite(large_slope)):
            verdicts.append(Verdict(name, None, False, "fewer than two values of M"))
            continue
        change, large_change = abs(slope) * span, abs(large_slope) * span
        holds = change < 0.5 * large_change
        flat = low <= 0 <= high
        verdicts.append(Verdict(name, holds, flat == holds and values["seed"].nunique() >= 2,
                                f"change over M at N={small}: {change:.4g} (slope {slope:.4g} [{low:.4g}, {high:.4g}]), "
                                f"at N={large}: {large_change:.4g}"))
    return verdicts


class SbsStudy(Study):
    name = "sbs"
    title = "Fig. 5: system cost vs number of SBSs"
    solvers = ("a3c",)
    full = SWEEP

    def add_arguments(self, parser) -> None:
        parser.add_argument("--scheme", default="a3c", help="solver playing the full scheme (default a3c)")
        parser.add_argument("--sbs-values", type=integer_list, default=None,
                            help="numbers of SBSs M (default 1,2,3,4,5; --quick 1,3,5)")
        parser.add_argument("--devices-values", type=integer_list, default=[20, 40],
                            help="numbers of devices N (default 20,40)")

    def default_solvers(self, args) -> list:
        return [args.scheme]

    def plan(self, args) -> list:
        args.sbs_values = args.sbs_values or ([1, 3, 5] if args.quick else [1, 2, 3, 4, 5])
        return [self.run(args, solver, seed, devices=devices, sbs=sbs)
                for solver in args.solvers for devices in args.devices_values for sbs in args.sbs_values
                for seed in range(args.seeds)]

    def draw(self, table, stem) -> None:
        draw_sweep(table, "sbs", stem, self.title, style="devices")

    def claims(self, table) -> tuple:
        values = evaluations(table)
        small, large = int(values["devices"].min()), int(values["devices"].max())
        claims = []
        for solver in dict.fromkeys(values["solver"]):
            claims.append(Claim(f"at N={large} more SBSs lower the cost ({solver})",
                                monotone(values, "sbs", {"solver": solver, "devices": large}, increasing=False)))
            if small != large:
                claims.append(Claim(f"at N={small} the number of SBSs barely matters ({solver})",
                                    barely_matters(values, small, large, solver)))
        notes = ["- \"Lower the cost\" is the sign of the least-squares slope over M (all seeds); \"barely matters\" "
                 f"means the fitted change over the range of M at N={small} is under half of that at N={large}."]
        return claims, means_table(values, ["solver", "devices", "sbs"]), notes


STUDY = SbsStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
