"""Fig. 6: system cost vs the number of devices N (10..40) for the full scheme and its two
ablations (no CPU allocation, no bandwidth/power allocation), M = 3.

The full scheme is ``--scheme`` (default ``a3c``, the paper's; ``bcd`` needs no training).
Claims (Sec. V): the cost of every scheme grows with N; full < no-CPU < no-bandwidth/power.

    python -m studies.devices [--quick] [--scheme bcd] [--devices-values 10,20,30,40]
"""

from __future__ import annotations

import sys

from .ablation import ablation_claims, ablation_notes
from .claims import Claim, evaluations, means_table, monotone
from .common import SWEEP, Study, integer_list
from .figures import draw_sweep


def growth_claims(values) -> list:
    """"the cost grows with N" for every solver."""
    return [Claim(f"the cost grows with N ({solver})", monotone(values, "devices", {"solver": solver}, increasing=True))
            for solver in dict.fromkeys(values["solver"])]


class DeviceSweep(Study):
    """A study over the number of devices N at fixed M (Figs. 6 and 7): every solver x N x seed,
    drawn against N. Subclasses set the N values and their claims."""

    full = SWEEP
    devices_default = (10, 20, 30, 40)  # N values of the default run
    devices_quick = (10, 20, 40)  # N values of --quick

    def add_arguments(self, parser) -> None:
        listed = ",".join(map(str, self.devices_default))
        quick = ",".join(map(str, self.devices_quick))
        parser.add_argument("--devices-values", type=integer_list, default=None,
                            help=f"numbers of devices N (default {listed}; --quick {quick})")
        parser.add_argument("--sbs", type=int, default=3, help="M, number of SBSs (default 3)")

    def plan(self, args) -> list:
        args.devices_values = args.devices_values or list(self.devices_quick if args.quick else self.devices_default)
        return [self.run(args, solver, seed, devices=devices, sbs=args.sbs)
                for solver in args.solvers for devices in args.devices_values for seed in range(args.seeds)]

    def draw(self, table, stem) -> None:
        draw_sweep(table, "devices", stem, self.title)


class DevicesStudy(DeviceSweep):
    name = "devices"
    title = "Fig. 6: system cost vs number of devices, full scheme and its ablations"
    solvers = ("a3c", "a3c-no-cpu", "a3c-no-radio")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--scheme", default="a3c", help="solver playing the full scheme (default a3c)")
        super().add_arguments(parser)

    def default_solvers(self, args) -> list:
        return [args.scheme, f"{args.scheme}-no-cpu", f"{args.scheme}-no-radio"]

    def claims(self, table) -> tuple:
        values = evaluations(table)
        claims = growth_claims(values)
        for devices in sorted(values["devices"].unique()):
            claims += ablation_claims(values, {"devices": devices}, suffix=f" at N={devices}")
        notes = ["- \"Grows with N\" is the sign of the least-squares slope over N (all seeds).",
                 *ablation_notes(claims)]
        return claims, means_table(values, ["solver", "devices"]), notes


STUDY = DevicesStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
