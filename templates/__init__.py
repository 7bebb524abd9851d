"""jinja2 templates of every file a genspec bundle contains (loaded by compiler.emit)."""
