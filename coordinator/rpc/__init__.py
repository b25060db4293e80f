"""gRPC servicers: transport only (parse, authenticate, call one domain function, map errors)."""
