"""The paper's benchmark curves (Sec. V), one command each:

- ``python -m studies.ablation``: Fig. 4, system cost vs training episodes for the full scheme
  and its two ablations (no CPU allocation, no bandwidth/power allocation), N = 20, M = 3;
- ``python -m studies.sbs``: Fig. 5, system cost vs the number of SBSs M for N = 20 and 40;
- ``python -m studies.devices``: Fig. 6, system cost vs N for the full scheme and its ablations;
- ``python -m studies.vs_dqn``: Fig. 7, system cost vs N for A3C and DQN;
- ``python -m studies.learning_rate``: Fig. 8, A3C learning curves for several learning rates;
- ``python -m studies.tradeoff``: not in the paper, eta_EE and the backlog against the Lyapunov
  weight V, checked against drift-plus-penalty's O(1/V) and O(V);
- ``python -m studies.twin``: not in the paper, what an imperfect digital twin costs, on the plant;
- ``python -m studies.scaling``: not in the paper, learned policies against ``bcd`` as N grows;
- ``python -m studies.paper``: all of them and one report.

Each writes a long-form table, its configuration, a figure drawn from the table and a summary
that checks the paper's claims on the measured numbers (``studies.common``).
"""

import dtnopt  # noqa: F401,E402  first, so BLAS gets one thread before numpy loads (see dtnopt)
