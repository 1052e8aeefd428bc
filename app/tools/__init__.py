"""Tools the model can call during a turn: small, typed actions such as exact arithmetic.

`base.py` holds the contract every tool meets and the registry that finds tools, describes them to
the model and checks the arguments it sends. Nothing here imports Qt.
"""
