"""Training checks and profiling: the rules, the analyzer and its report."""
