"""The park optimiser: green energy first, then cost, over a rolling horizon. See optimizer/README.md.

Entry points: ``optimizer.persistent`` (RollingOptimizer, optimize, oracle), ``optimizer.command``
(optimize_scenario, write_plan), ``optimizer.inputs`` (what a solve needs), ``optimizer.plan`` (what it
returns). Nothing is imported here, so importing the package stays cheap.
"""
