"""Fig. 7: system cost vs the number of devices N (5..20) for A3C and DQN, with ``bcd`` as the
reference, M = 3.

Claims (Sec. V): the cost grows with N; A3C beats DQN (the first two solvers of ``--solvers``
are compared: the proposed one, then the benchmark).

    python -m studies.vs_dqn [--quick] [--seeds K] [--devices-values 5,10,15,20] [--solvers a,b,c]
"""

from __future__ import annotations

import sys

from .claims import Claim, evaluations, means_table, ordering
from .devices import DeviceSweep, growth_claims


class VsDqnStudy(DeviceSweep):
    name = "vs_dqn"
    title = "Fig. 7: system cost vs number of devices, A3C vs DQN"
    solvers = ("a3c", "dqn", "bcd")
    devices_default = (5, 10, 15, 20)
    devices_quick = (5, 10, 20)
    shipped_point = True  # the N = 20 point compares the shipped a3c and dqn

    def claims(self, table) -> tuple:
        values = evaluations(table)
        claims = growth_claims(values)
        solvers = list(dict.fromkeys(values["solver"]))
        if len(solvers) >= 2:
            proposed, benchmark = solvers[:2]
            for devices in sorted(values["devices"].unique()):
                claims.append(Claim(f"A3C beats DQN at N={devices}: {proposed} < {benchmark}",
                                    ordering(values, [proposed, benchmark], {"devices": devices})))
        else:
            claims.append(Claim("A3C beats DQN: needs two solvers", []))
        notes = []
        if "episode" in table and table.loc[table["phase"] == "eval", "episode"].dropna().nunique() > 1:
            notes.append("- The learned solvers at N=20, M=3 are the shipped policies (each solver's default training "
                         "budget); the other values of N use the smaller sweep budget. \"Grows with N\" therefore "
                         "compares policies of two budgets at its last point; the comparisons at each N are not affected.")
        return claims, means_table(values, ["solver", "devices"]), notes


STUDY = VsDqnStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
