"""Separation methods: pure functions from a mixture array to a :class:`~demix.types.Separation`."""
