"""HTTP routes: thin handlers that parse, call the service layer and answer."""
