"""SQL to plans: parsing with sqlglot, logical plans, rules, distributed plans. No Ray."""

from planner.json_kernel import register_kernels as _register_kernels

_register_kernels()  # query workers unpickle expressions that call it without importing the compiler
