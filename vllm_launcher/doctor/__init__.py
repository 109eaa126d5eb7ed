"""Doctor: rules with stable codes (findings.py), static checks (rules_*.py), live checks (live.py) and
vLLM log explanations (logs.py). See engine.run_doctor for the whole run."""
