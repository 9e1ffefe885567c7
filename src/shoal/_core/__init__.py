"""Backend-neutral core: tasks, futures, outcome transport, scheduling, the Backend protocol."""
