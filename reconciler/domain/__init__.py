"""The pure centre: status rules, backoff policy, circuit breaker. Standard library only."""
