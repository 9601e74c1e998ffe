"""The HTTP routes, one module per audience: orders, the market, households' data, the operator."""
