"""Sky positions: object names found in APOD texts, resolved to RA/Dec (ICRS degrees)."""
