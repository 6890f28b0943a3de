"""Resources + endpoints -> one compiled snapshot per proxy, pushed."""
