"""The console's screenshot tool (``python -m tools.screenshots DIR``, ``make screenshots``) and
the stand-in learner/actor it and the console tests drive the console with (:mod:`.fake_child`)."""
