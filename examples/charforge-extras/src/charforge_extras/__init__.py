"""Two small charforge plugins: the Signum optimizer (:mod:`.signum`) and the parity task (:mod:`.parity`)."""
