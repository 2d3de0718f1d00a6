"""A node's GPUs digested for scheduling, and the choice of which free GPUs a pod gets.

``DeviceTopology.of(NodeDevices)`` keeps what placement needs: the healthy device ids in
inventory order, the islands (topology groups; a device in no group is an island of its own)
with their link type, and the pairwise link ranks from the ``links`` matrix. ``choose`` then
picks k free devices: inside one island if any island has k free (the best-linked such island,
then the one with the fewest free devices, so bigger islands stay whole for bigger pods), else
across islands, largest free islands first so the pod touches as few islands as possible.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from kray.crds.devices import NodeDevices

# nvidia-smi topo -m's link types, best first; a lower rank is a faster path between two GPUs.
LINK_RANK: dict[str, int] = {"SELF": 0, "NVLink": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}
WORST_LINK = LINK_RANK["SYS"]  # also what an unknown link between two devices counts as


@dataclass(slots=True)
class DeviceTopology:
    resource: str  # the extended resource the devices are advertised as (spec.driver)
    healthy: tuple[str, ...]
    islands: tuple[tuple[str, ...], ...]
    island_link: tuple[int, ...]  # each island's link rank
    links: dict[tuple[str, str], int] = field(default_factory=dict)  # empty: no matrix reported
    # Time-sliced devices are shared by several pods: ids mean nothing to place, count-only.
    time_sliced: bool = False

    @classmethod
    def of(cls, nd: NodeDevices) -> DeviceTopology:
        spec = nd.spec
        names = [d.name for d in spec.devices]
        known = set(names)
        islands: list[tuple[str, ...]] = []
        ranks: list[int] = []
        grouped: set[str] = set()
        for group in spec.topology_groups:
            members = tuple(d for d in group.devices if d in known and d not in grouped)
            if members:
                islands.append(members)
                ranks.append(LINK_RANK.get(group.link_type, WORST_LINK))
                grouped.update(members)
        for name in names:
            if name not in grouped:
                islands.append((name,))
                ranks.append(0)
        links: dict[tuple[str, str], int] = {}
        for i, row in enumerate(spec.links or []):
            for j, link in enumerate(row):
                if i < len(names) and j < len(names) and i != j:
                    links[names[i], names[j]] = LINK_RANK.get(link, WORST_LINK)
        return cls(
            resource=spec.driver,
            healthy=tuple(d.name for d in spec.healthy()),
            islands=tuple(islands),
            island_link=tuple(ranks),
            links=links,
            time_sliced=any(d.replicas > 1 for d in spec.devices),
        )

    def free(self, used: Mapping[str, int]) -> list[str]:
        """Healthy devices no pod holds, in inventory order."""
        return [d for d in self.healthy if not used.get(d)]

    def worst_link(self, devices: Sequence[str]) -> int:
        """The slowest link between any two of ``devices`` (0 for a single device)."""
        if len(devices) < 2:
            return 0
        if self.links:
            return max(self.links.get((a, b), WORST_LINK) for i, a in enumerate(devices) for b in devices[i + 1 :])
        members = set(devices)
        for island, rank in zip(self.islands, self.island_link, strict=True):
            if members.issubset(island):
                return rank
        return WORST_LINK  # spans islands and no matrix says how they connect


@dataclass(frozen=True, slots=True)
class Placement:
    devices: tuple[str, ...]
    worst_link: int
    island_free: int  # free devices in the island it was carved from; 0 when it spans islands


def choose(topo: DeviceTopology, free: Collection[str], k: int) -> Placement | None:
    """``k`` of the ``free`` devices (see the module docstring); None when fewer are free."""
    if k <= 0 or k > len(free):
        return None
    free_set = set(free)
    per_island = [[d for d in island if d in free_set] for island in topo.islands]
    best: tuple[int, int, int] | None = None
    for i, avail in enumerate(per_island):
        if len(avail) >= k:
            candidate = (topo.worst_link(avail[:k]), len(avail), i)
            if best is None or candidate < best:
                best = candidate
    if best is not None:
        rank, island_free, i = best
        return Placement(tuple(per_island[i][:k]), rank, island_free)
    order = sorted(range(len(per_island)), key=lambda i: (-len(per_island[i]), topo.island_link[i], i))
    chosen: list[str] = []
    for i in order:
        chosen.extend(per_island[i][: k - len(chosen)])
        if len(chosen) == k:
            break
    return Placement(tuple(chosen), topo.worst_link(chosen), 0)


# Score split: how well linked the devices are matters most; how snugly they fill their island
# (best fit, least fragmentation) breaks ties between equally linked placements.
LINK_POINTS = 60
FIT_POINTS = 40


def placement_score(p: Placement) -> int:
    """0..100: an exact fit of a whole NVLink island is 100; devices spread across sockets score 0."""
    link = (WORST_LINK - p.worst_link) * LINK_POINTS // WORST_LINK
    fit = len(p.devices) * FIT_POINTS // p.island_free if p.island_free else 0
    return link + fit
