"""A milestone as a task graph (networkx): what can run now, in what levels, on what path.

Nodes are task ids (the task in the node's `task` attribute); an edge A -> B means B comes after
A. The milestone parser has already refused cycles, unknown ids and duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from forge.planning.milestone import Milestone, MilestoneTask

if TYPE_CHECKING:
    import networkx as nx


def task_graph(plan: Milestone) -> nx.DiGraph[str]:
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    for task in plan.tasks:
        graph.add_node(task.id, task=task)
    for task in plan.tasks:
        for before in task.after:
            graph.add_edge(before, task.id)
    return graph


def task_of(graph: nx.DiGraph[str], task_id: str) -> MilestoneTask:
    task: MilestoneTask = graph.nodes[task_id]["task"]
    return task


def ready(graph: nx.DiGraph[str], done: set[str], taken: Iterable[str]) -> list[str]:
    """Tasks not done or taken whose predecessors are all done, in the file's order."""
    busy = set(taken) | done
    return [
        node
        for node in graph.nodes
        if node not in busy and all(p in done for p in graph.predecessors(node))
    ]


def levels(graph: nx.DiGraph[str]) -> list[list[str]]:
    """Tasks by level: the first level needs nothing, each later one needs an earlier level."""
    import networkx as nx

    order = {node: i for i, node in enumerate(graph.nodes)}
    return [sorted(level, key=order.__getitem__) for level in nx.topological_generations(graph)]


def critical_path(graph: nx.DiGraph[str], weight: Callable[[str], float]) -> list[str]:
    """The chain of dependent tasks with the largest total weight (e.g. estimated time)."""
    import networkx as nx

    best: dict[str, tuple[float, list[str]]] = {}
    for node in nx.topological_sort(graph):
        before = max(
            (best[p] for p in graph.predecessors(node)), key=lambda item: item[0], default=None
        )
        total, path = before if before is not None else (0.0, [])
        best[node] = (total + weight(node), [*path, node])
    if not best:
        return []
    return max(best.values(), key=lambda item: item[0])[1]


def dependents(graph: nx.DiGraph[str], task_id: str) -> set[str]:
    import networkx as nx

    found: set[str] = nx.descendants(graph, task_id)
    return found
