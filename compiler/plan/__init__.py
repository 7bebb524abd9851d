"""The plan pass: parameters, FLOPs and memory of each training stage on a target cluster."""

from compiler.plan.planner import Plan, PlanError, StagePlan, plan

__all__ = ["Plan", "PlanError", "StagePlan", "plan"]
