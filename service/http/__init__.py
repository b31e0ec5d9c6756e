"""The HTTP face of the service (`serve --http-listen`): HMA 2.0's hash routes and a JSON
mirror of the gRPC API, on the same keys, limits, engine and store as the gRPC server."""
