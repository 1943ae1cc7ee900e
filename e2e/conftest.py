# The stack fixture, one for the whole run (e2e/stack.py holds it and what tests share).
from e2e.stack import stack  # noqa: F401
