"""Network topology (Sec. II-B-1): station layout, device mobility and user association.

Arrays carry a leading batch axis ``B`` of independent environments; devices are the axis
``N``, stations the axis ``M + 1`` with index 0 the MBS.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import Scenario


def station_positions(scenario: Scenario) -> np.ndarray:
    """(M+1, 2) positions: the MBS b_0 at the centre, the M SBSs evenly on a ring of radius
    ``sbs_ring * L`` (deterministic, so a sweep over M changes only M; docs/model.md section 1)."""
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
    # One draw for both: the same numbers as uniform(0, v tau) then uniform(0, 2 pi). In-place
    # arithmetic on temporaries keeps large batches from paying for fresh allocations.
    step, heading = rng.random((2,) + positions.shape[:-1])
    # The displacement step (cos, sin)(heading) from t = tan(heading / 2), for speed: numpy's
    # float64 tan is vectorised, its cos and sin are not and cost several times more. With
    # k = 2 step / (1 + t^2): step cos = k - step, step sin = k t. heading / 2 < pi: t is finite.
    step *= scenario.speed_max * scenario.tau
    half_tangent = np.tan(np.multiply(heading, np.pi, out=heading), out=heading)
    k = np.square(half_tangent)
    k += 1.0
    np.divide(step, k, out=k)
    k *= 2.0
    moved = np.empty_like(positions)
    np.add(positions[..., 0], np.subtract(k, step, out=step), out=moved[..., 0])
    np.add(positions[..., 1], np.multiply(k, half_tangent, out=k), out=moved[..., 1])
    # Reflect at 0 and at L: the reflection is even and 2L-periodic, x -> L - |L - (|x| mod 2L)|.
    # A step of at most L stays inside [-L, 2L], where the mod changes nothing: skip it then.
    area = scenario.area
    np.abs(moved, out=moved)
    if scenario.speed_max * scenario.tau > area:
        np.fmod(moved, 2.0 * area, out=moved)
    np.subtract(area, moved, out=moved)
    np.abs(moved, out=moved)
    return np.subtract(area, moved, out=moved)


def squared_distances_by_station(positions: np.ndarray, stations: np.ndarray) -> np.ndarray:
    """(M+1, B N) squared distances r_ij^2, m^2, station-major: row j holds station j's
    distance to every device of the batch, devices flattened in (B, N) order."""
    # Station-major, so every operation runs along B N devices rather than along the M+1
    # stations (short inner loops are slow).
    coordinates = positions.reshape(-1, 2).T
    dx = coordinates[0] - stations[:, 0, None]
    dy = coordinates[1] - stations[:, 1, None]
    dx *= dx
    dy *= dy
    dx += dy
    return dx


def by_link(by_station: np.ndarray, devices_shape: tuple) -> np.ndarray:
    """A station-major (M+1, B N) array laid out per link, ``devices_shape + (M+1,)``, e.g. (B, N, M+1)."""
    return np.ascontiguousarray(by_station.T).reshape(tuple(devices_shape) + (len(by_station),))


def coverage(scenario: Scenario, distances: np.ndarray, squared: bool = False) -> np.ndarray:
    """(B, N, M+1) bool: station j can serve device i. The MBS covers the whole area, an SBS
    covers the disc of radius gamma_s (Sec. II-B-1). With ``squared``, ``distances`` holds r^2."""
    covered = distances < (scenario.sbs_coverage**2 if squared else scenario.sbs_coverage)
    covered[..., 0] = True
    return covered


def nearest_covering_station(scenario: Scenario, squared_by_station: np.ndarray) -> np.ndarray:
    """(B N,) station index of each device from station-major squared distances (M+1, B N):
    the nearest SBS whose coverage holds the device, else the MBS (index 0). This is the edge
    set of the graph G."""
    sbs = squared_by_station[1:]
    if len(sbs) == 0:
        return np.zeros(squared_by_station.shape[1], dtype=np.intp)
    # Every SBS has the same coverage radius: the nearest covering SBS is the nearest SBS, if it
    # covers the device.
    nearest = np.minimum.reduce(sbs, axis=0)
    # The first SBS at that distance, as argmin would pick it, found as the largest of the
    # descending numbers M..1 over the SBSs at that distance: for speed, as reductions along the
    # station-major rows (argmin along the short station axis is several times slower).
    first = np.maximum.reduce((sbs == nearest) * _descending_numbers(len(sbs)), axis=0)
    station = first.astype(np.intp)
    np.subtract(len(sbs) + 1, station, out=station)
    station *= nearest < scenario.sbs_coverage**2
    return station


@lru_cache(maxsize=64)
def _descending_numbers(count: int) -> np.ndarray:
    """(count, 1) the numbers count..1, small integers (uint16: M <= 1000) for fast products."""
    numbers = np.arange(count, 0, -1, dtype=np.uint16)[:, None]
    numbers.flags.writeable = False
    return numbers


@lru_cache(maxsize=64)
def _batch_offsets(batch: int, stations: int) -> np.ndarray:
    offsets = stations * np.arange(batch)[:, None]
    offsets.flags.writeable = False
    return offsets


@lru_cache(maxsize=64)
def _link_offsets(batch: int, devices: int, stations: int) -> np.ndarray:
    offsets = stations * np.arange(batch * devices).reshape(batch, devices)
    offsets.flags.writeable = False
    return offsets


def station_index(association: np.ndarray, stations: int) -> np.ndarray:
    """(B, N) flat index of each device's station in a C-ordered (B, M+1) array: gather a
    per-station quantity ``values`` to the devices with ``values.ravel()[index]``."""
    return association + _batch_offsets(association.shape[0], stations)


def at_station(values: np.ndarray, association: np.ndarray) -> np.ndarray:
    """(B, N) the value of each device's station in a per-station (B, M+1) array."""
    return values.ravel()[station_index(association, values.shape[1])]


def own_link(values: np.ndarray, association: np.ndarray) -> np.ndarray:
    """(B, N) the entry of each device's own link in a per-link (B, N, M+1) array."""
    return values.ravel()[association + _link_offsets(*values.shape)]


def station_sum(values: np.ndarray, association: np.ndarray, stations: int) -> np.ndarray:
    """(B, M+1) sum over the devices of each station of a (B, N) per-device quantity."""
    batch = association.shape[0]
    index = station_index(association, stations)
    return np.bincount(index.ravel(), weights=np.asarray(values).ravel(), minlength=batch * stations).reshape(
        batch, stations
    )


def station_count(association: np.ndarray, stations: int) -> np.ndarray:
    """(B, M+1) number of devices associated with each station (float)."""
    batch = association.shape[0]
    index = station_index(association, stations)
    return np.bincount(index.ravel(), minlength=batch * stations).reshape(batch, stations).astype(float)
