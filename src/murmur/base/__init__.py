"""Types every layer shares: errors, injected randomness, identifiers, counters."""
