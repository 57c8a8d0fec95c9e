"""Sessions: the recorder of sign-ins, calls, conferences and evidence, and the statistics."""
