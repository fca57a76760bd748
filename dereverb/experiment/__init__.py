"""The representation study (run by ``python -m dereverb.study``), one job per module:
:mod:`~dereverb.experiment.config` (arms, capacities, profiles, runs, fingerprints),
:mod:`~dereverb.experiment.files` (the study folder), :mod:`~dereverb.experiment.eval_sets`
(evaluation items, baselines, a checkpoint's scores), :mod:`~dereverb.experiment.checkpoints`
(weights at chosen steps), :mod:`~dereverb.experiment.runner` (one submitit job per run),
:mod:`~dereverb.experiment.analysis` (statistics), :mod:`~dereverb.experiment.figures` and
:mod:`~dereverb.experiment.report` (REPORT.md, report.json).
"""
