"""SQL to plans: parsing with sqlglot, logical plans, rules, distributed plans. No Ray."""
