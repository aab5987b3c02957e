"""A Docker-free, persistent (SQLite) emulator of Durable Task Scheduler's gRPC API."""
