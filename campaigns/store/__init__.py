"""Storage: the engine, the models, the schema and its migrations."""
