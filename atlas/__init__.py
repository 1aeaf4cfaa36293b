"""What both sides of Cosmic Atlas need: the pipeline that writes the lake and the app that reads it.

Encoders (the same model must embed the archive and the queries), decoding of untrusted pictures,
offline object-name lookup, content hashes and the environment settings live here, so the app never
imports :mod:`pipeline` and the pipeline never imports the app.
"""
