"""Generation: everything between a trained model and its text.

* :mod:`~charforge.sampling.loading`: :func:`load_engine`, the front door every front end uses.
* :mod:`~charforge.sampling.settings`: what is asked for (``Settings``, ``Request``) and given back (``Sample``).
* :mod:`~charforge.sampling.engine`: the batched engine that runs requests.
* :mod:`~charforge.sampling.randomness`: each sample's own random stream.
* :mod:`~charforge.sampling.picking`: choosing each row's next character with its own settings.
* :mod:`~charforge.sampling.priming`: prompts primed once each, states spliced into the batch.
* :mod:`~charforge.sampling.stops`: stop strings; :mod:`~charforge.sampling.beam`: beam search.
* :mod:`~charforge.sampling.fastpath`: the compiled step loop of the built-in cells (float32 or int8).
"""
