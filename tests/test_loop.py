"""The Lyapunov loop (Algorithm 1): determinism under a seed, KPIs consistent with the slot
table, infeasible actions and non-finite slots rejected, held-out seeds, and the ablation
mechanism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dtnopt import (ABLATIONS, KPI_NAMES, MBIT, Action, InfeasibleAction, NonFiniteSlot, Scenario, Solver,
                    fixed_allocation, held_out_seeds, make, run_episode, run_seeds, slots)
from dtnopt.solver import CPU_BLOCKS, RADIO_BLOCKS

SMALL = Scenario(devices=6, sbs=2, slots=25)
BLOCKS = ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure")


class RandomBlocks(Solver):
    """Decides a random feasible action (every block differs from ``fixed_allocation``)."""

    name = "random-blocks"

    def reset(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def decide(self, observation):
        reference = fixed_allocation(self.scenario, observation.association)
        return Action(*(getattr(reference, name) * self.rng.uniform(0.1, 0.9, getattr(reference, name).shape)
                        for name in BLOCKS))


class Overreaching(Solver):
    """Asks for more power than p_max from slot 3 on."""

    name = "overreaching"

    def decide(self, observation):
        action = fixed_allocation(self.scenario, observation.association)
        if observation.slot >= 3:
            action.power = action.power * 2.0
        return action


class StarvingSender(Solver):
    """From slot 3 on gives the senders of environment 1 (of a batch of two) the smallest positive
    edge CPU: feasible, but the edge energy epsilon c D / f^e overflows to infinity."""

    name = "starving-sender"

    def decide(self, observation):
        action = fixed_allocation(self.scenario, observation.association)
        if observation.slot >= 3 and observation.batch > 1:
            action.edge_cpu[1] = 5e-324
        return action


def test_same_seed_same_table_different_seed_different_table():
    first = run_episode(make("greedy", SMALL), SMALL, seed=11)
    again = run_episode(make("greedy", SMALL), SMALL, seed=11)
    other = run_episode(make("greedy", SMALL), SMALL, seed=12)
    columns = [c for c in first.slots.columns if c != "decision_ms"]  # wall time is not deterministic
    pd.testing.assert_frame_equal(first.slots[columns], again.slots[columns])
    assert {k: v for k, v in first.kpi.items() if k != "decision_ms"} == {
        k: v for k, v in again.kpi.items() if k != "decision_ms"}
    assert not np.allclose(first.slots["cost"], other.slots["cost"])


def test_episode_seed_defaults_to_the_scenario_seed():
    a = run_episode(make("equal", SMALL), SMALL.replace(seed=4))
    b = run_episode(make("equal", SMALL), SMALL, seed=4)
    np.testing.assert_array_equal(a.slots["cost"], b.slots["cost"])


def test_kpis_summarise_the_slot_table():
    episode = run_episode(make("equal", SMALL), SMALL, seed=3)
    table, kpi = episode.slots, episode.kpi
    assert list(kpi) == list(KPI_NAMES)
    assert len(table) == SMALL.slots and list(table["slot"]) == list(range(SMALL.slots))
    assert kpi["system_cost"] == pytest.approx(table["cost"].sum())
    assert kpi["energy_efficiency_j_per_mbit"] == pytest.approx(table["energy_j"].sum() / table["served_mbit"].sum())
    assert kpi["mean_energy_j"] == pytest.approx(table["energy_j"].mean())
    assert kpi["mean_local_backlog_mbit"] == pytest.approx(table["local_backlog_mbit"].mean())
    assert kpi["mean_edge_backlog_mbit"] == pytest.approx(table["edge_backlog_mbit"].mean())
    assert kpi["throughput_mbit"] == pytest.approx(table["served_mbit"].mean())
    assert kpi["stable"] is True
    assert table["local_backlog_mbit"].iloc[0] == 0 and table["edge_backlog_mbit"].iloc[0] == 0  # empty start
    # eta(t) in the table is the running ratio of the slots before t (13)
    energy, served = table["energy_j"].to_numpy(), table["served_mbit"].to_numpy()
    t = 10
    assert served[:t].sum() > 0
    assert table["eta_j_per_mbit"].iloc[t] == pytest.approx(energy[:t].sum() / served[:t].sum())


def test_batched_episode_rows_and_kpis_per_environment():
    episode = run_episode(make("equal", SMALL), SMALL, seed=1, batch=3)
    assert len(episode.kpis) == 3 and len(episode.slots) == 3 * SMALL.slots
    for env, kpi in enumerate(episode.kpis):
        rows = episode.slots[episode.slots["env"] == env]
        assert kpi["system_cost"] == pytest.approx(rows["cost"].sum())


def test_unstable_queues_are_flagged():
    scenario = SMALL.replace(queue_cap=3 * MBIT)
    assert run_episode(make("local", scenario), scenario, seed=0).kpi["stable"] is False
    assert run_episode(make("greedy", SMALL), SMALL, seed=0).kpi["stable"] is True


def test_infeasible_action_from_a_solver_is_rejected_naming_the_constraint():
    with pytest.raises(InfeasibleAction, match=r"solver 'overreaching' returned an infeasible action: "
                                               r"power breaks \(14b\)"):
        run_episode(Overreaching(SMALL), SMALL, seed=0)


def test_a_non_finite_slot_is_an_error_naming_solver_slot_quantity_and_environment():
    with pytest.warns(RuntimeWarning, match="overflow"), pytest.raises(NonFiniteSlot) as error:
        run_episode(StarvingSender(SMALL), SMALL, seed=0, batch=2)
    assert isinstance(error.value, FloatingPointError)
    assert str(error.value).startswith("solver 'starving-sender' at slot 3: non-finite cost (environment 1), "
                                       "energy_j (environment 1); ")
    assert error.value.slot == 3 and list(error.value.non_finite) == ["cost", "energy_j"]


def test_slots_yields_what_run_episode_records_and_can_stop_early():
    episode = run_episode(make("random", SMALL), SMALL, seed=6)
    loop = list(slots(make("random", SMALL), SMALL, seed=6))
    assert [slot.index for slot in loop] == list(range(SMALL.slots))
    np.testing.assert_array_equal([slot.result.cost[0] for slot in loop], episode.slots["cost"])
    for before, after in zip(loop, loop[1:]):
        assert after.observation is before.next_observation and after.observation.slot == before.index + 1
    first = next(iter(slots(make("random", SMALL), SMALL, seed=6)))
    np.testing.assert_array_equal(first.action.power, loop[0].action.power)


def test_run_seeds_gives_one_row_per_seed():
    table = run_seeds(make("equal", SMALL), SMALL, seeds=[3, 4])
    assert list(table["seed"]) == [3, 4] and set(KPI_NAMES) <= set(table.columns)
    assert table["system_cost"].iloc[0] == pytest.approx(run_episode(make("equal", SMALL), SMALL, seed=3).kpi["system_cost"])


def test_held_out_seeds_are_fixed_and_above_the_training_range():
    assert held_out_seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    assert held_out_seeds(0) == []
    with pytest.raises(ValueError, match="count must be an integer >= 0, got -1"):
        held_out_seeds(-1)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_episode_seeds_are_named(seed):
    with pytest.raises(ValueError, match=f"seed must be an integer >= 0, got {seed!r}"):
        run_episode(make("equal", SMALL), SMALL, seed=seed)
    with pytest.raises(ValueError, match="seed must be an integer"):
        slots(make("equal", SMALL), SMALL, seed=seed)  # when the loop is built, before any slot


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablation_fixes_exactly_its_blocks(ablation):
    from dtnopt.solver import Ablation

    solver = RandomBlocks(SMALL, ablation=ABLATIONS[ablation])
    plain = RandomBlocks(SMALL)
    network_obs = __import__("conftest").observe(SMALL, 2, slots=3)[1]
    solver.reset(0)
    plain.reset(0)
    acted, decided = solver.act(network_obs), plain.decide(network_obs)
    reference = fixed_allocation(SMALL, network_obs.association)
    fixed = ABLATIONS[ablation].fixed
    assert fixed == {"no-cpu": CPU_BLOCKS, "no-radio": RADIO_BLOCKS}[ablation]
    for name in BLOCKS:
        expected = reference if name in fixed else decided
        np.testing.assert_array_equal(getattr(acted, name), getattr(expected, name), err_msg=name)
    assert solver.label == f"random-blocks-{ablation}"
    assert Ablation().apply(network_obs, decided) is decided


def test_plant_benchmark_times_loop_slots_of_the_equal_allocation():
    from benchmarks.plant import FirstEqualAllocation, seconds_per_slot

    seconds_per_slot(devices=5, batch=4, slots=3, repeats=1, decide=True)  # a smoke run of ``benchmarks.plant``
    kept = [slot.action for slot in slots(FirstEqualAllocation(SMALL), SMALL, seed=0, check=False)]
    assert all(action is kept[0] for action in kept)  # the first slot's allocation, projected by the loop
    for slot in slots(FirstEqualAllocation(SMALL, afresh=True), SMALL, seed=0):
        np.testing.assert_array_equal(slot.action.bandwidth_share,
                                      fixed_allocation(SMALL, slot.observation.association).bandwidth_share)


def test_solver_benchmark_loops_run_on_slots(monkeypatch):
    import benchmarks.solvers as bench

    times = bench.decision_times("equal", devices=4, slots=8)
    assert 0 <= times["median_ms"] <= times["p95_ms"] and 0 <= times["median_cpu_ms"] <= times["p95_cpu_ms"]
    monkeypatch.setattr(bench, "SIZES", (3,))
    table = bench.failure_table(slots_per_size=205)  # crosses into a second 200-slot episode
    assert table.to_dict("records") == [{"N": 3, "slots": 205, "failures": 0, "worse_than_equal_or_greedy": 0}]
