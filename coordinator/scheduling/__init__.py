"""Scheduling: which node runs which task. A pure core (``core.py``) and the service that applies its
decisions to the database and wakes long-polling workers (``service.py``)."""
