"""One module per kind of worker; each exposes one class implementing the Backend protocol."""
