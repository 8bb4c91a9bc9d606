# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Tools the ultralytics-biformer fork adds on top of upstream's engine: `compare` trains architectures alike."""
