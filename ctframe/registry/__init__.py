"""Floor 2, the plugin host: the pluggy manager and registry of components, recipes validated
against the registered components' options, the recipe JSON Schema and the plugin listing.
"""
