"""The shared vocabulary every other package may import, and which imports nothing of Plume's: readings and data
flags (model), the strict base of every settings model and the name pattern (strict), local time (localtime),
name patterns (patterns) and the clock (clock)."""
