"""The filter language of ``GET /runs``: lex, parse, compile to SQL, select a page (search)."""
