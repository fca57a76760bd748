"""The representation study (run by ``python -m dereverb.study``), one job per module:

- :mod:`~dereverb.experiment.config`: profiles, arms (pointing at ``configs/*.yaml``), the runs
  and their fingerprints;
- :mod:`~dereverb.experiment.files`: the study folder's layout and JSON files;
- :mod:`~dereverb.experiment.eval_sets`: the evaluation items, baselines and a run's scores;
- :mod:`~dereverb.experiment.checkpoints`: the Lightning callback that saves the weights at
  the training steps a run is evaluated at (``evaluation.at_steps``);
- :mod:`~dereverb.experiment.runner`: planning, one job per run, the local process pool;
- :mod:`~dereverb.experiment.analysis`: a study folder's numbers and statistics (on
  :mod:`dereverb.evaluation.intervals` and the bands of :mod:`dereverb.evaluation.report`);
- :mod:`~dereverb.experiment.verdicts`, :mod:`~dereverb.experiment.tables`,
  :mod:`~dereverb.experiment.figures`: the answers, Markdown tables and figures;
- :mod:`~dereverb.experiment.report`: ``REPORT.md``, ``report.json`` and the figures' files.
"""
