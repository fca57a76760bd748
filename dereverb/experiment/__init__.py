"""The representation study (run by ``python -m dereverb.study``): profiles and arms, the runner,
and the report built on the evaluation report."""
