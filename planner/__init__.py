"""SQL to plans: parsing with sqlglot, logical plans, rules, distributed plans. No Ray."""

from planner.decimal_kernel import register_kernels as _register_decimal_kernels
from planner.json_kernel import register_kernels as _register_kernels

_register_kernels()  # query workers unpickle expressions that call them without importing the compiler
_register_decimal_kernels()
