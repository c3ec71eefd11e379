"""Where every weight lives: the pure planner, its options, the devices it
plans for, and the check of llama.cpp's own account against the plan."""
