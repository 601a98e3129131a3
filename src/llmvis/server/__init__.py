"""The HTTP server: FastAPI app, model engine, security, static files."""
