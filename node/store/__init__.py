"""The state machine: libraries, documents, chunks, their vectors and columns."""
