"""The regression gate: rules, baselines, the judgement of a run or of a candidate against its base, verdict files."""
