"""The TUI's screens: training (live or attached) and sampling."""
