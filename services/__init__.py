"""Use cases, one module per domain: what the platform does, whoever asks.

Views, agents and commands all call these functions. Each use case runs in one database
transaction (or joins the caller's, for an agent whose event claim must commit with the
effects), keeps the pure decisions of `domain/`, talks to the outside world only through the
ports of `services/ports.py`, and reports refusals with the errors of `services/errors.py`,
never with HTTP answers: `web/` maps them to the contract's responses.
"""
