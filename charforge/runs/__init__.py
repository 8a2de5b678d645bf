"""Checkpoints and run directories: what a run leaves on disk, and the only code that writes or reads it.

* :mod:`~charforge.runs.directory`: :class:`~charforge.runs.directory.Run`, the owner of a run
  directory (its files' names, creation, which checkpoint ``best``/``latest``/``step-N`` is).
* :mod:`~charforge.runs.metrics`: ``metrics.jsonl``, one JSON object per event.
* :mod:`~charforge.runs.checkpoint`: the tensor layout of a checkpoint, saving, loading, restoring.
* :mod:`~charforge.runs.validation`: every check a checkpoint passes before anything is built from it.
* :mod:`~charforge.runs.files`: atomic writes; :mod:`~charforge.runs.header`: a checkpoint's
  metadata read without torch.
"""
