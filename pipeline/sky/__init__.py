"""The sky stage's network side: SIMBAD and Sesame name resolution for what the offline catalogues miss."""
