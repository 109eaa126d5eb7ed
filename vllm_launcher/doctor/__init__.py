"""Doctor: rules with stable codes (registry.py; facts and findings in findings.py), static checks
(rules_*.py), live checks (live.py) and vLLM log explanations (logs.py). engine.run_doctor is the whole run;
preflight.preflight_findings is what `vllm-launch up` checks before spawning.

Nothing is imported here: the small background supervisor imports `doctor.logs` through this package.
"""
