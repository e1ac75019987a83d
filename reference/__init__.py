"""Reference backends: ``jsonfile``, ``sqlite`` and ``redis``, each implementing every family."""
