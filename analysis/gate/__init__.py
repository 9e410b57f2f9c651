"""The regression gate's analysis: rules (rules.py, rules.toml), stored baselines (baseline.py), the judgement of a run
(judge.py) or of a candidate against its base commit (against_base.py), the verdict (verdict.py) and its formats
(verdict_formats.py). Running what is judged is the harness's (offpath/gate.py)."""
