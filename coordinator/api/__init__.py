"""FastAPI routers: transport only. Routes are plain ``def`` so FastAPI runs blocking domain calls in its
thread pool, off the event loop that also serves gRPC."""
