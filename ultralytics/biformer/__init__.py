# Ultralytics-BiFormer 🚀 AGPL-3.0 License - https://ultralytics.com/license
"""Tools the ultralytics-biformer fork adds on top of upstream's engine (the layers are in `ultralytics.nn.AddModules`).

`routing` records and draws what BRA's routing does; `compare` trains architectures alike and compares them.
"""
