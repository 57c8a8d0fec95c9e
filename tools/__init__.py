"""Development tools run from a checkout (linters' plug-ins); not part of the shipped packages."""
