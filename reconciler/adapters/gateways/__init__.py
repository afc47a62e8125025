"""Gateway clients behind one small interface (see `base`)."""
