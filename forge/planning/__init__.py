"""Planning: milestone files and the plan of tasks they describe."""

from forge.planning.milestone import Milestone, MilestoneError, MilestoneTask, load_milestone

__all__ = ["Milestone", "MilestoneError", "MilestoneTask", "load_milestone"]
