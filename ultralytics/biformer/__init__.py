# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Tools of the ultralytics-biformer fork that work on BiFormer models (not layers: those are in nn.AddModules)."""
