"""What a process needs around a run: signals, locks, downloads, start-up, ranks."""
