"""End-to-end studies that train, evaluate and write a report (CPU-sized)."""
