"""Records: tables, the engine for SQLite or PostgreSQL, and the repository over them."""
