"""The asyncio runtime: real sockets, real timers, driving the sans-I/O core."""
