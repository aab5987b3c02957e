"""The emulator's web dashboard: task hubs, orchestrations, instances and entities."""
