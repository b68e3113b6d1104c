"""fkdbench."""
