"""Reusable experiment tasks: small, self-contained problems that train models built from any
registered cell on data that is not text.

* :mod:`charforge.tasks.frequency`: the Phased LSTM paper's frequency-discrimination task
  (asynchronously sampled sine waves, (value, timestamp) sequences with a mask), as
  ``charforge frequency-task`` and :func:`charforge.tasks.frequency.run`.
"""
