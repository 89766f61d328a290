"""Federated distillation on Flower: FedGen (data-free KD through a server-side generator), FedAvg and
FedProx, run by Flower's simulation engine on one machine or by a real SuperLink and SuperNodes.

`config.py` (what a federation is), `split.py` (Dirichlet label splits), `generator.py` (FedGen's
generator and its losses), `client.py` (the ClientApp), `strategy.py` (the Flower strategies),
`server.py` (the ServerApp's body: rounds, checkpoints, resume), `run.py` (`federate`: the simulation),
`app.py` (the module-level apps that `flwr run` loads).
"""
