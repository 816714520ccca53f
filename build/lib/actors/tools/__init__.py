"""Tools beside the service, never imported by it: ``execd bench`` (benchmarks against floors
measured in the same run) and ``execd loadtest`` (load with injected faults, then invariants)."""
