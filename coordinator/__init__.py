"""HiveMind coordinator: one process serving gRPC (workers, clients) and HTTP (REST, admin, panel)."""

__version__ = "0.1.0"
