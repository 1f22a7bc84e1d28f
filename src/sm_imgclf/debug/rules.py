"""Moved to :mod:`sm_imgclf.runtime.checks.rules`; this path keeps working."""

from sm_imgclf.runtime.checks.rules import RULES, RuleResult, evaluate, rule_parameters

__all__ = ["RULES", "RuleResult", "evaluate", "rule_parameters"]
