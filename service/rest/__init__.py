"""HTTP transport: the app factory and one thin router per resource over the data plane."""
