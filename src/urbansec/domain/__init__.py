"""Plain types shared by every layer."""
