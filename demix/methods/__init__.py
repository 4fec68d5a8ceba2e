"""Separation methods: one module per method, each a pure function from a mixture to a Separation."""
