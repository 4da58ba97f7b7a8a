"""Pure spatial and temporal analysis: numpy arrays in, results out."""
