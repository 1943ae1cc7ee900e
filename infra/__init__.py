"""What every process shares (worker, CLI, HTTP app, dev stack, tests): settings, the payload
codec and data converter, logging, the Temporal connection. Imports only `domain/` and
libraries, never `starter/`, `workflows/` or `activities/`."""
