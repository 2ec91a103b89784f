"""The checks, one module per line of the checklist they test (docs/doctor.md). Each
takes the shared ``Context`` and returns ``Check`` verdicts; none opens more than the
context's connection cap allows."""
