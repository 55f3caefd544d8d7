"""The action's feasible set (14a)-(14e): one projection, one check, and the unit action map of
``dtnopt.features`` that learned solvers and the Gymnasium env share."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtnopt import Action, InfeasibleAction, Scenario, check_feasible, fixed_allocation, is_feasible, project
from dtnopt.action import max_departure, violations
from dtnopt.features import action_from_unit, action_size, unit_from_action
from dtnopt.topology import station_sum

from conftest import SMALL, observe, scenarios, wild_action, wild_values


def assert_within_bounds(scenario: Scenario, action: Action, association: np.ndarray, tol=1e-9):
    """(14a)-(14e) checked directly, independently of ``violations``."""
    for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        value = getattr(action, name)
        assert np.all(np.isfinite(value)) and np.all(value >= 0), name
    assert np.all(station_sum(action.bandwidth_share, association, scenario.stations) <= 1 + tol)  # (14a)
    assert np.all(action.power <= scenario.max_power)  # (14b)
    assert np.all(action.local_cpu <= scenario.local_cpu)  # (14c)
    edge_cpu = station_sum(action.edge_cpu, association, scenario.stations)
    assert np.all(edge_cpu <= scenario.station_cpu * (1 + tol))  # (14d)
    assert np.all(action.edge_departure * scenario.cycles_per_bit
                  <= scenario.station_cpu * scenario.tau * (1 + tol))  # (14e)


@settings(max_examples=100)
@given(scenarios(), st.integers(1, 3), st.integers(0, 2**16))
def test_projection_is_feasible_and_idempotent(scenario, batch, seed):
    rng = np.random.default_rng(seed)
    _, observation = observe(scenario, batch, seed)
    association = observation.association
    projected = project(scenario, wild_action(rng, scenario, batch), association)
    assert_within_bounds(scenario, projected, association)
    assert is_feasible(scenario, projected, association)
    check_feasible(scenario, projected, association)
    again = project(scenario, projected, association)
    for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        np.testing.assert_allclose(getattr(again, name), getattr(projected, name), rtol=1e-12, atol=0)


@settings(max_examples=30)
@given(scenarios(), st.integers(0, 2**16))
def test_projection_leaves_feasible_actions_unchanged_and_maps_nan_to_zero(scenario, seed):
    _, observation = observe(scenario, 2, seed)
    feasible = fixed_allocation(scenario, observation.association)
    projected = project(scenario, feasible, observation.association)
    for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        # equal shares may sum to 1 + 1 ulp, which the projection rounds away
        np.testing.assert_allclose(getattr(projected, name), getattr(feasible, name), rtol=1e-14, atol=0)
    nan = Action(*(np.full_like(getattr(feasible, name), np.nan) for name in
                   ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure")))
    zero = project(scenario, nan, observation.association)
    assert all(np.all(getattr(zero, name) == 0) for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu"))
    assert np.all(zero.edge_departure == 0)


def test_projection_scales_an_overfull_station_in_proportion():
    scenario = Scenario(devices=3, sbs=1)
    association = np.array([[1, 1, 0]])
    action = fixed_allocation(scenario, association)
    action.bandwidth_share = np.array([[0.9, 0.3, 2.0]])
    action.edge_cpu = np.array([[9e9, 3e9, 10e9]])
    projected = project(scenario, action, association)
    np.testing.assert_allclose(projected.bandwidth_share, [[0.75, 0.25, 1.0]])
    np.testing.assert_allclose(projected.edge_cpu, [[7.5e9, 2.5e9, 10e9]])


def test_projection_does_not_alias_the_input():
    _, observation = observe(SMALL, 1)
    action = fixed_allocation(SMALL, observation.association)
    projected = project(SMALL, action, observation.association)
    projected.power[:] = 0.0
    assert np.all(action.power == SMALL.max_power)


# --- the feasibility check names the broken constraint ---

def broken(name: str, scenario: Scenario, association: np.ndarray) -> Action:
    action = fixed_allocation(scenario, association)
    if name == "14a":
        action.bandwidth_share = action.bandwidth_share * 1.5
    elif name == "14b":
        action.power = action.power * 1.01
    elif name == "14c":
        action.local_cpu = action.local_cpu * 1.01
    elif name == "14d":
        action.edge_cpu = action.edge_cpu * 1.01
    elif name == "14e":
        action.edge_departure = max_departure(scenario, association.shape[0]) * 1.01
    return action


@pytest.mark.parametrize("constraint,block", [("14a", "bandwidth_share"), ("14b", "power"), ("14c", "local_cpu"),
                                              ("14d", "edge_cpu"), ("14e", "edge_departure")])
def test_infeasible_action_names_its_constraint(constraint, block):
    _, observation = observe(SMALL, 2)
    action = broken(constraint, SMALL, observation.association)
    with pytest.raises(InfeasibleAction, match=rf"{block} breaks \({constraint}\)") as error:
        check_feasible(SMALL, action, observation.association, who="solver 'x'")
    assert str(error.value).startswith("solver 'x' returned an infeasible action")
    assert isinstance(error.value, ValueError)
    assert not is_feasible(SMALL, action, observation.association)


def test_tiny_floating_point_excess_is_tolerated():
    _, observation = observe(SMALL, 2)
    action = fixed_allocation(SMALL, observation.association)
    action.power = action.power * (1 + 1e-9)
    check_feasible(SMALL, action, observation.association)


@pytest.mark.parametrize("value,message", [
    (np.nan, "power has non-finite entries"), (np.inf, "power has non-finite entries"),
    (-1e-3, "power has negative entries"),
])
def test_non_finite_and_negative_entries_are_named(value, message):
    _, observation = observe(SMALL, 2)
    action = fixed_allocation(SMALL, observation.association)
    action.power[1, 2] = value
    with pytest.raises(InfeasibleAction, match=message):
        check_feasible(SMALL, action, observation.association)


def test_wrong_shapes_and_types_are_named():
    _, observation = observe(SMALL, 2)
    action = fixed_allocation(SMALL, observation.association)
    action.local_cpu = action.local_cpu[:1]
    assert violations(SMALL, action, observation.association) == [
        f"local_cpu has shape (1, {SMALL.devices}), expected (2, {SMALL.devices})"]
    action = fixed_allocation(SMALL, observation.association)
    action.edge_departure = action.edge_departure.astype(str)
    with pytest.raises(InfeasibleAction, match="edge_departure has dtype"):
        check_feasible(SMALL, action, observation.association)


# --- the unit action map shared by learned solvers and the env ---

@settings(max_examples=40)
@given(scenarios(), st.integers(1, 3), st.integers(0, 2**16))
def test_any_unit_vector_maps_to_a_feasible_action(scenario, batch, seed):
    rng = np.random.default_rng(seed)
    _, observation = observe(scenario, batch, seed)
    unit = wild_values(rng, (batch, action_size(scenario)), 0.5)
    action = action_from_unit(observation, unit)
    assert_within_bounds(scenario, action, observation.association)
    check_feasible(scenario, action, observation.association)


def test_unit_vector_round_trip():
    _, observation = observe(SMALL, 3, slots=2)
    action = fixed_allocation(SMALL, observation.association)
    back = action_from_unit(observation, unit_from_action(observation, action))
    for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        np.testing.assert_allclose(getattr(back, name), getattr(action, name), rtol=1e-12)
