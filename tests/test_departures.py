"""``python -m benchmarks.departures``: a learned policy's decisions finished by ``bcd``'s blocks,
and who sends beside ``bcd`` (its bad arguments: ``test_targets.py``)."""

import numpy as np

from benchmarks.departures import Finished, main, senders
from dtnopt import Network, Scenario, make
from dtnopt.blocks import local_cpu_rule
from dtnopt.lyapunov import evaluate
from dtnopt.solver import Solver

TINY = Scenario(devices=4, sbs=1)


def _observations(scenario, count=6, seed=3):
    network, greedy = Network(scenario, 1), make("greedy", scenario)
    observation = network.reset(seed)
    for _ in range(count):
        yield observation
        network.step(greedy.act(observation))
        observation = network.observation


def test_local_cpu_finish_sets_the_rule_and_keeps_the_radio():
    scenario = Scenario(devices=6, sbs=2)
    policy, bcd = make("a3c", scenario, seed=1), make("bcd", scenario)
    finished = Finished(policy, "local-CPU rule", bcd)
    for observation in _observations(scenario):
        decided, action = policy.act(observation), finished.act(observation)
        _, service = evaluate(observation, decided)
        np.testing.assert_array_equal(
            action.local_cpu, local_cpu_rule(observation, observation.local_queue - service.offload_bits))
        for block in ("bandwidth_share", "power", "edge_cpu", "edge_departure"):
            np.testing.assert_array_equal(getattr(action, block), getattr(decided, block))


def test_queue_split_finish_never_raises_the_cost_and_keeps_the_bands_and_edge_cpu():
    scenario = Scenario(devices=6, sbs=2)
    policy, bcd = make("a3c", scenario, seed=2), make("bcd", scenario)
    finished = Finished(policy, "queue split", bcd)
    assert finished.label == "a3c + queue split"
    for observation in _observations(scenario):
        decided, action = policy.act(observation), finished.act(observation)
        assert evaluate(observation, action)[0][0] <= evaluate(observation, decided)[0][0] + 1e-9
        np.testing.assert_array_equal(action.bandwidth_share, decided.bandwidth_share)
        np.testing.assert_array_equal(action.edge_cpu, decided.edge_cpu)


class _NeverSends(Solver):
    name = "never-sends"

    def __init__(self, scenario):
        super().__init__(scenario)
        self.greedy = make("greedy", scenario)

    def decide(self, observation):
        action = self.greedy.act(observation)
        action.power[:] = 0.0
        action.bandwidth_share[:] = 0.0
        return action


def test_senders_counts_who_sends_beside_bcd():
    bcd = make("bcd", TINY)
    alike = senders(bcd, bcd, TINY, [5])  # bcd beside itself: the same device wherever one sends
    assert alike["same device"] > 0
    assert alike["other device"] == alike["only policy"] == alike["only bcd"] == 0
    assert np.isnan(alike["bcd_bits_mbit"]) and np.isnan(alike["busy_edge_only_bcd"])
    assert 0 <= alike["busy_edge_both"] <= 1
    silent = senders(_NeverSends(TINY), bcd, TINY, [5])  # every slot where bcd sends is a missed one
    assert silent["only bcd"] > 0 and silent["same device"] == silent["other device"] == silent["only policy"] == 0
    assert silent["bcd_bits_mbit"] > 0 and np.isfinite(silent["sender_above_beta_mbit"])
    assert silent["busy_edge_only_bcd"] == 0  # a policy that never sends leaves the edge queues empty


def test_command_scores_each_finish_and_counts_senders(tmp_path, capsys):
    paths = []
    for seed in (0, 1):  # untrained: the command's output, not the policies' quality, is checked
        paths.append(tmp_path / f"a3c_{seed}.pt")
        make("a3c", TINY, seed=seed).save(paths[-1])
    main(["--devices", "4", "--sbs", "1", "--seeds", "2", "--episodes", "1",
          "--model", str(paths[0]), "--model", str(paths[1])])
    out = capsys.readouterr().out
    for path in paths:
        for finish in ("as decided", "local-CPU rule", "queue split"):
            assert f"{path}, {finish}:" in out
    assert out.count("who sends (station-slots)") == 2
    for finish in ("as decided", "local-CPU rule", "queue split"):
        assert f"{finish}: over 2 runs: local backlog minus bcd's" in out
