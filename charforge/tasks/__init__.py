"""Tasks: problems that are not a text corpus, trained by the ordinary trainer.

* :mod:`charforge.tasks.task`: the contract (:class:`~charforge.tasks.task.Task`, its data).
* :mod:`charforge.tasks.frequency`: the Phased LSTM paper's frequency-discrimination task
  (asynchronously sampled sine waves, (value, timestamp) sequences), the task ``frequency``.

The built-in tasks are registered by the plugin ``charforge_builtins.tasks``, as a third party's are.
"""
