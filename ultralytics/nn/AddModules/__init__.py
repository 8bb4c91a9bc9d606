# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""BiFormer layers added by the ultralytics-biformer fork."""
