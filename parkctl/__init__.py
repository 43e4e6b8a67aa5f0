"""parkctl: the park-edge energy controller's command line and the pieces every package shares.

Sign convention (the only one in this project): grid power is positive when the park imports,
battery power is positive when the battery discharges, PV power and load power are positive.
Hence ``grid_kw = load_kw - pv_kw - battery_kw``.
"""

__version__ = "0.1.0"
