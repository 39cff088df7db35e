"""Engines: turn a prepared persona + speech + expression track into frames (see base.Engine)."""
