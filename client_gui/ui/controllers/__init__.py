"""Controllers: the behaviour behind each view (signals, background calls, the engine)."""
