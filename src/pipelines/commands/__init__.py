"""The commands besides `run`: evaluate, predict, resume, rerun, ui, help, cli."""
