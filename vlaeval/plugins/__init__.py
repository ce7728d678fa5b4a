"""The pluggy plugin system: hook specifications, plugin loading and lazy registries."""
