"""Network topology (Sec. II-B-1): station layout, device mobility and user association.

Arrays carry a leading batch axis ``B`` of independent environments; devices are the axis
``N``, stations the axis ``M + 1`` with index 0 the MBS.
"""

from __future__ import annotations

import numpy as np

from .config import Scenario


def station_positions(scenario: Scenario) -> np.ndarray:
    """(M+1, 2) positions: the MBS b_0 at the centre, the M SBSs evenly on a ring of radius
    ``sbs_ring * L`` (deterministic, so a sweep over M changes only M; MODEL.md 1)."""
    centre = scenario.area / 2.0
    angles = 2.0 * np.pi * np.arange(scenario.sbs) / max(scenario.sbs, 1)
    radius = scenario.sbs_ring * scenario.area
    ring = np.stack([centre + radius * np.cos(angles), centre + radius * np.sin(angles)], axis=1)
    return np.vstack([[centre, centre], ring])


def initial_positions(rng: np.random.Generator, scenario: Scenario, batch: int) -> np.ndarray:
    """(B, N, 2) device locations l_i(0), uniform in the L x L area."""
    return rng.uniform(0.0, scenario.area, size=(batch, scenario.devices, 2))


def move(rng: np.random.Generator, scenario: Scenario, positions: np.ndarray) -> np.ndarray:
    """One slot of the bounded random walk: speed ~ U[0, speed_max], uniform heading,
    reflected at the border of the area."""
    shape = positions.shape[:-1]
    step = rng.uniform(0.0, scenario.speed_max * scenario.tau, size=shape)
    heading = rng.uniform(0.0, 2.0 * np.pi, size=shape)
    moved = positions + np.stack([step * np.cos(heading), step * np.sin(heading)], axis=-1)
    area = scenario.area
    moved = np.abs(moved)  # reflect at 0
    return area - np.abs(area - moved)  # reflect at L


def station_distances(positions: np.ndarray, stations: np.ndarray) -> np.ndarray:
    """(B, N, M+1) distances r_ij between every device and every station, m."""
    delta = positions[:, :, None, :] - stations[None, None, :, :]
    return np.sqrt(np.einsum("bnmk,bnmk->bnm", delta, delta))


def coverage(scenario: Scenario, distances: np.ndarray) -> np.ndarray:
    """(B, N, M+1) bool: station j can serve device i. The MBS covers the whole area, an SBS
    covers the disc of radius gamma_s (Sec. II-B-1)."""
    covered = distances < scenario.sbs_coverage
    covered[:, :, 0] = True
    return covered


def associate(scenario: Scenario, distances: np.ndarray) -> np.ndarray:
    """(B, N) station index of each device: the nearest SBS whose coverage holds the device,
    else the MBS (index 0). This is the edge set of the graph G."""
    if scenario.sbs == 0:
        return np.zeros(distances.shape[:2], dtype=np.intp)
    sbs = distances[:, :, 1:]
    nearest = np.argmin(sbs, axis=2)
    inside = np.take_along_axis(sbs, nearest[:, :, None], axis=2)[:, :, 0] < scenario.sbs_coverage
    return np.where(inside, nearest + 1, 0)


def station_sum(values: np.ndarray, association: np.ndarray, stations: int) -> np.ndarray:
    """(B, M+1) sum over the devices of each station of a (B, N) per-device quantity."""
    batch = values.shape[0]
    index = association + stations * np.arange(batch)[:, None]
    return np.bincount(index.ravel(), weights=values.ravel(), minlength=batch * stations).reshape(
        batch, stations
    )


def station_count(association: np.ndarray, stations: int) -> np.ndarray:
    """(B, M+1) number of devices associated with each station."""
    return station_sum(np.ones(association.shape), association, stations)
