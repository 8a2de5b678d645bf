"""What a trained model computes on a text, for people to look at: per-character surprisal and the
model's predictions, every layer's hidden units and gates, a time cell's clock (:mod:`.extract`);
units ranked by the text features they track (:mod:`.features`); and the views of them: the
terminal's coloured text (:mod:`.terminal`), a self-contained HTML report (:mod:`.report`) and
matplotlib plots (:mod:`.plots`). The command line, the terminal UI and the API all read one
:class:`~charforge.inspection.extract.Inspection`.
"""
