"""Reading a job's checks and profile: the analyzer, its insights, plots and report."""
