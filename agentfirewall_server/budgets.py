"""Budgets: what a budget is, which requests it covers, how much each one spends.

The definitions, windows and covering rules are the core's (``agentfirewall.budgets``,
pure), shared with ``agentfirewall.testing``; they are re-exported here for the control
plane's modules. ``budgetstore.py`` reserves and settles; ``routes/budgets.py`` serves them.
"""

from __future__ import annotations

from agentfirewall.budgets import (
    LLM_MEASURES,
    NAME_PATTERN,
    BudgetBody,
    BudgetDef,
    CompiledBudget,
    Cover,
    compile_budget,
    window_end,
    window_start,
)

__all__ = [
    "LLM_MEASURES",
    "NAME_PATTERN",
    "BudgetBody",
    "BudgetDef",
    "CompiledBudget",
    "Cover",
    "compile_budget",
    "window_end",
    "window_start",
]
