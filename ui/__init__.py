"""The browser notebook's presentation: layout, event handlers, per-user state, theme."""
