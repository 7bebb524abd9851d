"""The plan pass: parameters, FLOPs and memory of each training stage on a target cluster."""

from compiler.plan.planner import Plan, PlanError, StagePlan, plan
from compiler.plan.scale import SCALES, scaled

__all__ = ["Plan", "PlanError", "StagePlan", "plan", "scaled", "SCALES"]
