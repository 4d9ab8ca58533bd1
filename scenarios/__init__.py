"""Class-incremental benchmarks and the scripted benchmark runner."""
