"""Tests of the deterministic queue state machine (``state_machine``)."""
