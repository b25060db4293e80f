"""The HiveMind wire contract (package ``hivemind.v1``) and its committed generated code."""
