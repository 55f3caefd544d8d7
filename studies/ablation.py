"""Fig. 4: system cost vs training episodes for the full scheme and its ablations.

The learned scheme (``a3c``) and its ablations ``a3c-no-cpu`` (no computation-resource
allocation) and ``a3c-no-radio`` (no bandwidth/power allocation) are trained on N = 20, M = 3
with their learning curves recorded; ``bcd`` and its ablations are the reference levels.
Claim (Sec. V): full < no-CPU < no-bandwidth/power, i.e. the radio blocks matter more than the
CPU blocks.

    python -m studies.ablation [--quick] [--seeds K] [--jobs J] [--solvers a,b,c] [--plot-only]
"""

from __future__ import annotations

import sys

from .claims import Claim, beats, evaluations, means_table, ordering
from .common import Study, add_network_arguments
from .figures import draw_curves


def ablation_families(solvers) -> list:
    """Base names whose full scheme and both ablations are all among ``solvers``, in order."""
    present = list(dict.fromkeys(solvers))
    return [name for name in present if f"{name}-no-cpu" in present and f"{name}-no-radio" in present]


def ablation_claims(values, where: dict | None = None, suffix: str = "") -> list:
    """The paper's "full < no-CPU < no-bandwidth/power" for every solver family present, as its
    two parts: the full scheme beats both ablations; the radio blocks matter more than the CPU
    blocks (no-CPU < no-bandwidth/power)."""
    families = ablation_families(values["solver"])
    if not families:
        return [Claim("full < no-CPU < no-bandwidth/power" + suffix + ": no solver ran with both ablations", [])]
    claims = []
    for base in families:
        no_cpu, no_radio = f"{base}-no-cpu", f"{base}-no-radio"
        claims += [
            Claim(f"full < no-CPU < no-bandwidth/power{suffix}, first part, the full scheme beats both ablations: "
                  f"{base} < {no_cpu}, {no_radio}", beats(values, base, [no_cpu, no_radio], where)),
            Claim(f"full < no-CPU < no-bandwidth/power{suffix}, second part, bandwidth/power allocation matters more "
                  f"than CPU allocation: {no_cpu} < {no_radio}", ordering(values, [no_cpu, no_radio], where)),
        ]
    return claims


def ablation_notes(claims: list) -> list:
    """The model's reason when the CPU ablation costs more energy per bit than the radio one."""
    second = [c for c in claims if "second part" in c.text]
    flipped = [c for c in second if any(v.metric.startswith("eta_EE") and v.holds is False for v in c.verdicts)]
    if not flipped:
        return []
    return [f"- On eta_EE the CPU ablation is the worse one in {len(flipped)} of {len(second)} comparisons: without CPU allocation every device computes at f^l_max, which costs varsigma c (f^l_max)^2 = "
            "0.025 J/Mbit (docs/model.md section 4), several times the few mJ/Mbit of transmitting at p_max, so in this model "
            "the CPU blocks matter more for energy per bit than the bandwidth/power blocks."]


class AblationStudy(Study):
    curves = True
    name = "ablation"
    title = "Fig. 4: system cost vs training episodes, full scheme and its ablations"
    solvers = ("a3c", "a3c-no-cpu", "a3c-no-radio", "bcd", "bcd-no-cpu", "bcd-no-radio")

    def add_arguments(self, parser) -> None:
        add_network_arguments(parser)

    def plan(self, args) -> list:
        return [self.run(args, solver, seed, devices=args.devices, sbs=args.sbs)
                for solver in args.solvers for seed in range(args.seeds)]

    def draw(self, table, stem) -> None:
        devices, sbs = table["devices"].iloc[0], table["sbs"].iloc[0]
        draw_curves(table, stem, f"{self.title} (N={devices}, M={sbs})")

    def claims(self, table) -> tuple:
        values = evaluations(table)
        notes = [
            "- Learned solvers are compared by their final policy on the evaluation episodes; the curves show "
            "the same KPIs on the validation episodes of their training-time evaluations (disjoint from the "
            "evaluation episodes).",
        ]
        claims = ablation_claims(values)
        return claims, means_table(values, ["solver"]), notes + ablation_notes(claims)


STUDY = AblationStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
